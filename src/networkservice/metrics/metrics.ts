// `metrics` (upstream sdk pkg/networkservice/common/metrics; first in a hop's chain): counts and times every
// Request and Close this hop serves, by component, network service and gRPC code. Labels never carry
// connection ids or addresses, and service names are capped (serviceLabel), so series stay bounded.
import type { NetworkServiceElement } from "../../core/chain.js";
import { callBuckets } from "../../observability/metrics/buckets.js";
import { codeOf, serviceLabel } from "../../observability/metrics/labels.js";
import { metricPrefix, metricSet } from "../../observability/metrics/registry.js";

const metrics = metricSet((registry, prom) => ({
  calls: new prom.Counter({
    name: `${metricPrefix}networkservice_calls_total`,
    help: "NetworkService Requests (refreshes included) and Closes a hop served, by gRPC code (OK or the error's)",
    labelNames: ["component", "service", "method", "code"] as const,
    registers: [registry],
  }),
  duration: new prom.Histogram({
    name: `${metricPrefix}networkservice_call_duration_seconds`,
    help: "Time a hop took to answer a NetworkService Request or Close, this hop and every hop after it",
    labelNames: ["component", "service", "method"] as const,
    buckets: callBuckets,
    registers: [registry],
  }),
}));

type Metrics = NonNullable<ReturnType<typeof metrics>>;

async function observed<T>(
  m: Metrics,
  labels: { component: string; service: string; method: "request" | "close" },
  call: () => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  try {
    const out = await call();
    m.calls.inc({ ...labels, code: "OK" });
    return out;
  } catch (err) {
    m.calls.inc({ ...labels, code: codeOf(err) });
    throw err;
  } finally {
    m.duration.observe(labels, (performance.now() - t0) / 1000);
  }
}

/** `component` names the hop kind (nsmgr, forwarder, nse, nsc): one process serves one. */
export function metricsServer(component: string): NetworkServiceElement {
  return {
    name: "metrics",
    request(req, ctx, next) {
      const m = metrics();
      if (!m) return next.request(req, ctx);
      const service = serviceLabel(req.connection?.networkService ?? "");
      return observed(m, { component, service, method: "request" }, () => next.request(req, ctx));
    },
    close(conn, ctx, next) {
      const m = metrics();
      if (!m) return next.close(conn, ctx);
      const service = serviceLabel(conn.networkService);
      return observed(m, { component, service, method: "close" }, () => next.close(conn, ctx));
    },
  };
}

/** On a client it is the same element: what the client asked for and how long the mesh took to answer. */
export const metricsClient = metricsServer;
