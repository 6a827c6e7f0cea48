// `metrics` (first in a registry chain): counts and times Register, Unregister and Find calls by record kind
// (ns, nse) and gRPC code; a Find with watch=true is counted as "watch" when it ends, and held in a gauge of
// open watches while it lasts (its duration is the stream's life, so it is not timed). Calls a process makes
// into its own chain (an nsmgr looking a service up for a Request: ctx.internal) are not counted.
import type { RegistryServer } from "../core/registrychain.js";
import type { CallContext } from "../core/context.js";
import { callBuckets } from "../observability/metrics/buckets.js";
import { codeOf } from "../observability/metrics/labels.js";
import { metricPrefix, metricSet } from "../observability/metrics/registry.js";
import type { NSEServer, NSServer } from "./types.js";

type Method = "register" | "unregister" | "find" | "watch";

const metrics = metricSet((registry, prom) => ({
  calls: new prom.Counter({
    name: `${metricPrefix}registry_calls_total`,
    help: "Registry calls served, by kind (ns, nse), method (register, unregister, find, watch) and gRPC code",
    labelNames: ["component", "kind", "method", "code"] as const,
    registers: [registry],
  }),
  duration: new prom.Histogram({
    name: `${metricPrefix}registry_call_duration_seconds`,
    help: "Time to answer a registry Register, Unregister or one-shot Find",
    labelNames: ["component", "kind", "method"] as const,
    buckets: callBuckets,
    registers: [registry],
  }),
  watches: new prom.Gauge({
    name: `${metricPrefix}registry_watches`,
    help: "Find watch streams open now",
    labelNames: ["component", "kind"] as const,
    registers: [registry],
  }),
}));

type Metrics = NonNullable<ReturnType<typeof metrics>>;

async function observed<T>(
  m: Metrics,
  labels: { component: string; kind: string; method: Method },
  ctx: CallContext,
  call: () => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  const watch = labels.method === "watch";
  if (watch) m.watches.inc({ component: labels.component, kind: labels.kind });
  try {
    const out = await call();
    // A watch ends when its caller goes away: that is a cancel, not a success.
    m.calls.inc({ ...labels, code: ctx.signal.aborted ? "CANCELLED" : "OK" });
    return out;
  } catch (err) {
    m.calls.inc({ ...labels, code: codeOf(err) });
    throw err;
  } finally {
    if (watch) m.watches.dec({ component: labels.component, kind: labels.kind });
    else m.duration.observe(labels, (performance.now() - t0) / 1000);
  }
}

function registryMetrics<T, Q extends { watch: boolean }, R>(
  component: string,
  kind: "ns" | "nse",
): RegistryServer<T, Q, R> {
  return {
    name: "metrics",
    register(item, ctx, next) {
      const m = metrics();
      if (!m || ctx.internal) return next.register(item, ctx);
      return observed(m, { component, kind, method: "register" }, ctx, () => next.register(item, ctx));
    },
    unregister(item, ctx, next) {
      const m = metrics();
      if (!m || ctx.internal) return next.unregister(item, ctx);
      return observed(m, { component, kind, method: "unregister" }, ctx, () => next.unregister(item, ctx));
    },
    find(query, ctx, stream, next) {
      const m = metrics();
      if (!m || ctx.internal) return next.find(query, ctx, stream);
      const method = query.watch ? "watch" : "find";
      return observed(m, { component, kind, method }, ctx, () => next.find(query, ctx, stream));
    },
  };
}

/** `component` is the process kind serving the chain: registry or nsmgr (which proxies the registry). */
export const metricsNSE = (component: string): NSEServer => registryMetrics(component, "nse");
export const metricsNS = (component: string): NSServer => registryMetrics(component, "ns");
