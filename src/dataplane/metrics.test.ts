// Kernel-operation metrics against the real kernel, inside a private namespace this test makes (it goes with
// its handle): every rtnetlink request timed by message type, refusals counted by errno, the link-delete
// worker's deletes timed too; nothing recorded while metrics are off.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { metricValue } from "../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../observability/metrics/registry.js";
import { LinkDeleter } from "./deleter.js";
import { Dataplane, type NetnsHandle } from "./index.js";
import { netlinkOp } from "./metrics.js";

const isRoot = process.getuid?.() === 0;
const duration = "nsm_dataplane_netlink_request_duration_seconds";

describe("netlink op labels", () => {
  it("are the message type's name, _dump for dumps", () => {
    assert.equal(netlinkOp(16, false), "newlink");
    assert.equal(netlinkOp(18, true), "getlink_dump");
    assert.equal(netlinkOp(99, false), "other");
  });
});

describe("dataplane metrics", { skip: !isRoot && "needs root (a private network namespace)" }, () => {
  const dp = new Dataplane();
  let ns: NetnsHandle;

  before(() => {
    ns = dp.newNetns();
  });
  after(() => dp.close());
  afterEach(disableMetrics);

  it("times every request by type and counts refusals by errno", async () => {
    await enableMetrics();
    await ns.link.createBridge({ name: "br-m", up: true });
    await assert.rejects(ns.link.createBridge({ name: "br-m" }));
    await ns.link.list();
    await ns.link.delete("br-m");
    assert.equal(await metricValue(`${duration}_count`, { op: "newlink" }), 2);
    assert.equal(await metricValue(`${duration}_count`, { op: "getlink_dump" }), 1);
    assert.equal(await metricValue(`${duration}_count`, { op: "dellink" }), 1);
    assert.ok((await metricValue(`${duration}_sum`, { op: "newlink" }))! > 0);
    assert.equal(
      await metricValue("nsm_dataplane_netlink_errors_total", { op: "newlink", errno: "EEXIST" }),
      1,
    );
  });

  it("times the deletes the worker thread makes", async () => {
    await enableMetrics();
    await ns.link.createBridge({ name: "br-w" });
    const deleter = new LinkDeleter();
    try {
      await deleter.delete(ns, "br-w");
    } finally {
      await deleter.close();
    }
    assert.equal(await ns.link.find("br-w"), undefined);
    assert.equal(await metricValue(`${duration}_count`, { op: "dellink" }), 1);
  });

  it("records nothing while metrics are off", async () => {
    await ns.link.list();
    await enableMetrics();
    assert.equal(await metricValue(`${duration}_count`), undefined);
  });
});
