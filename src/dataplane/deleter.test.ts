// LinkDeleter: deletes happen on a worker thread (the main event loop keeps running), and a namespace the
// worker cannot reach by path is still handled through the caller's handle.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Netns, ip, links } from "../../test/helpers/netns.js";
import { LinkDeleter } from "./deleter.js";
import { Dataplane, type NetnsHandle } from "./index.js";

const root = process.getuid?.() === 0;
const net = new Netns();
const dp = new Dataplane();
const deleter = new LinkDeleter();
let ns: string;
let handle: NetnsHandle;

describe("LinkDeleter", { skip: !root && "needs root" }, () => {
  before(() => {
    ns = net.add("del");
    handle = dp.netns(net.path(ns));
  });
  after(async () => {
    await deleter.close();
    dp.close();
    net.cleanup();
    assert.deepEqual(net.leftovers(), []);
  });

  it("deletes on a worker thread while the main loop keeps ticking", async () => {
    for (let i = 0; i < 4; i++)
      ip(["-n", ns, "link", "add", `a${i}`, "type", "veth", "peer", "name", `b${i}`]);
    let ticks = 0;
    const iv = setInterval(() => ticks++, 2);
    const t = performance.now();
    await Promise.all([0, 1, 2, 3].map((i) => deleter.delete(handle, `a${i}`)));
    const ms = performance.now() - t;
    clearInterval(iv);
    assert.deepEqual(links(ns), []);
    assert.ok(ticks >= (ms / 2) * 0.3, `main loop ticked ${ticks} times in ${ms.toFixed(0)} ms`);
  });

  it("a missing link is fine", async () => {
    await deleter.delete(handle, "nosuchlink");
  });

  it("close lets deletes in flight finish, then the worker ends; later deletes run in this thread", async () => {
    const d = new LinkDeleter();
    for (let i = 0; i < 3; i++)
      ip(["-n", ns, "link", "add", `c${i}`, "type", "veth", "peer", "name", `d${i}`]);
    const inFlight = [0, 1].map((i) => d.delete(handle, `c${i}`));
    const t = performance.now();
    const closed = d.close(10_000);
    assert.equal(d.close(), closed, "a second close waits for the same end");
    await Promise.all(inFlight);
    assert.equal(await closed, true, "the worker ended by itself");
    assert.ok(performance.now() - t < 5_000, "and did not wait for the grace period");
    await d.delete(handle, "c2");
    assert.deepEqual(links(ns), []);
  });
});
