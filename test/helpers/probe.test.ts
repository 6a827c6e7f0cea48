// The heal probe must not flatter: an outage that lasts to the end is reported to the end, and the probe
// follows the connection's current addresses. Two namespaces joined by a veth (169.254.77.0/24), per-run names.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Netns, ip } from "./netns.js";
import { Probe } from "./healmesh.js";

const net = new Netns("nsmp");
let a = "";

describe("heal probe", () => {
  before(() => {
    a = net.add("a");
    const b = net.add("b");
    net.wire(a, "169.254.77.1/24", b, "169.254.77.2/24");
    ip(["-n", b, "addr", "add", "169.254.77.3/24", "dev", `${net.prefix}b`]);
  });
  after(() => {
    net.cleanup();
    assert.deepEqual(net.leftovers(), []);
  });

  it("counts a path that never comes back as out until the end", async () => {
    let to = { src: "169.254.77.1", dst: "169.254.77.2" };
    const probe = new Probe(net.path(a), () => to);
    await new Promise((r) => setTimeout(r, 200));
    to = { src: "169.254.77.1", dst: "169.254.77.9" }; // nobody answers there
    await new Promise((r) => setTimeout(r, 600));
    const r = await probe.stop();
    assert.ok(r.outageMs >= 600, JSON.stringify(r));
    assert.ok(r.lost >= 3, JSON.stringify(r));
    assert.equal(r.flowsAtEnd, false);
  });

  it("follows the target's current addresses and sees traffic flow at the end", async () => {
    let to: { src: string; dst: string } | undefined = { src: "169.254.77.1", dst: "169.254.77.2" };
    const probe = new Probe(net.path(a), () => to);
    await new Promise((r) => setTimeout(r, 150));
    to = undefined; // between connections: every probe is lost
    await new Promise((r) => setTimeout(r, 300));
    to = { src: "169.254.77.1", dst: "169.254.77.3" };
    await new Promise((r) => setTimeout(r, 200));
    const r = await probe.stop();
    assert.ok(r.outageMs >= 300 && r.outageMs < 600, JSON.stringify(r));
    assert.ok(r.lost > 0, JSON.stringify(r));
    assert.equal(r.flowsAtEnd, true);
  });
});
