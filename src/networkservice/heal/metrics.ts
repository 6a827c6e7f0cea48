// Heal metrics: completed heals by kind and how long the connection's control plane was out (from the
// client noticing the break to the healing Request's success).
import { outageBuckets } from "../../observability/metrics/buckets.js";
import { serviceLabel } from "../../observability/metrics/labels.js";
import { metricPrefix, metricSet } from "../../observability/metrics/registry.js";

const metrics = metricSet((registry, prom) => ({
  heals: new prom.Counter({
    name: `${metricPrefix}heals_total`,
    help: "Connections a client healed: restore (same path) or reselect (new forwarder and endpoint)",
    labelNames: ["service", "kind"] as const,
    registers: [registry],
  }),
  outage: new prom.Histogram({
    name: `${metricPrefix}heal_duration_seconds`,
    help: "From a client noticing a broken connection to the heal's success (the control-plane outage)",
    labelNames: ["service", "kind"] as const,
    buckets: outageBuckets,
    registers: [registry],
  }),
}));

export function recordHeal(service: string, kind: "restore" | "reselect", ms: number): void {
  const m = metrics();
  if (!m) return;
  const labels = { service: serviceLabel(service), kind };
  m.heals.inc(labels);
  m.outage.observe(labels, ms / 1000);
}
