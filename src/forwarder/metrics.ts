// Data-plane metrics of a forwarder: how long plumbing one connection (apply: first setup or refresh) and
// unplumbing it (release) take, whatever the data plane (kernel, tf, noop). A wrapper, so xconnect and the
// data planes stay as they are.
import { callBuckets } from "../observability/metrics/buckets.js";
import { metricPrefix, metricSet } from "../observability/metrics/registry.js";
import type { DataPlane } from "./dataplane.js";

const metrics = metricSet(
  (registry, prom) =>
    new prom.Histogram({
      name: `${metricPrefix}forwarder_dataplane_duration_seconds`,
      help: "Time a forwarder's data plane took to plumb (apply) or remove (release) one connection",
      labelNames: ["dataplane", "op", "outcome"] as const,
      buckets: callBuckets,
      registers: [registry],
    }),
);

function timed(dataplane: string, op: "apply" | "release", run: () => Promise<void>): Promise<void> {
  const h = metrics();
  if (!h) return run();
  const t0 = performance.now();
  const done = (outcome: string) => () =>
    h.observe({ dataplane, op, outcome }, (performance.now() - t0) / 1000);
  const p = run();
  void p.then(done("ok"), done("error"));
  return p;
}

/** `dp` with apply and release timed while metrics are on. */
export function measuredDataPlane(dp: DataPlane): DataPlane {
  return {
    name: dp.name,
    incoming: dp.incoming,
    outgoing: (kind, conn) => dp.outgoing(kind, conn),
    apply: (incoming, outgoing, ctx) => timed(dp.name, "apply", () => dp.apply(incoming, outgoing, ctx)),
    release: (incoming, outgoing, ctx) =>
      timed(dp.name, "release", () => dp.release(incoming, outgoing, ctx)),
  };
}
