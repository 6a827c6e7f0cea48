// measuredDataPlane: apply and release timed by data plane and outcome, everything else passed through.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { metricValue } from "../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../observability/metrics/registry.js";
import { emptyConnection } from "../networkservice/updatepath/updatepath.js";
import { noopDataPlane, type DataPlane, type Leg } from "./dataplane.js";
import { measuredDataPlane } from "./metrics.js";

const leg: Leg = { conn: emptyConnection(), mechanism: { cls: "LOCAL", type: "KERNEL", parameters: {} } };
const ctx = new CallContext(rootLogger, new AbortController().signal);

describe("measuredDataPlane", () => {
  afterEach(disableMetrics);

  it("times apply and release by data plane and outcome", async () => {
    await enableMetrics();
    const failing: DataPlane = {
      ...noopDataPlane(),
      name: "kernel",
      apply: () => Promise.reject(new Error("no")),
    };
    const dp = measuredDataPlane(failing);
    assert.equal(dp.name, "kernel");
    assert.deepEqual(dp.incoming, ["KERNEL", "VXLAN"]);
    await assert.rejects(dp.apply(leg, leg, ctx), /no/);
    await dp.release(leg, leg, ctx);
    const h = "nsm_forwarder_dataplane_duration_seconds_count";
    assert.equal(await metricValue(h, { dataplane: "kernel", op: "apply", outcome: "error" }), 1);
    assert.equal(await metricValue(h, { dataplane: "kernel", op: "release", outcome: "ok" }), 1);
  });

  it("records nothing while metrics are off", async () => {
    await measuredDataPlane(noopDataPlane()).apply(leg, leg, ctx);
    await enableMetrics();
    assert.equal(await metricValue("nsm_forwarder_dataplane_duration_seconds_count"), undefined);
  });
});
