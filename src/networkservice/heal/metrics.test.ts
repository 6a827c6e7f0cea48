// Heal metrics: completed heals by service and kind, and the outage each one ended.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { metricValue } from "../../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../../observability/metrics/registry.js";
import { recordHeal } from "./metrics.js";

describe("heal metrics", () => {
  afterEach(disableMetrics);

  it("count heals by kind and put their outage in seconds in the histogram", async () => {
    await enableMetrics();
    recordHeal("web", "restore", 120);
    recordHeal("web", "restore", 80);
    recordHeal("web", "reselect", 2500);
    assert.equal(await metricValue("nsm_heals_total", { service: "web", kind: "restore" }), 2);
    assert.equal(await metricValue("nsm_heals_total", { service: "web", kind: "reselect" }), 1);
    assert.equal(await metricValue("nsm_heal_duration_seconds_sum", { kind: "restore" }), 0.2);
    assert.equal(await metricValue("nsm_heal_duration_seconds_bucket", { kind: "reselect", le: 2.5 }), 1);
    assert.equal(await metricValue("nsm_heal_duration_seconds_bucket", { kind: "reselect", le: 1 }), 0);
  });

  it("records nothing while metrics are off", async () => {
    recordHeal("web", "restore", 1);
    await enableMetrics();
    assert.equal(await metricValue("nsm_heals_total"), undefined);
  });
});
