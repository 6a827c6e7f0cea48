// TF/OpenSDN API metrics: each HTTP exchange with the vRouter agent's port API and the VNC config API, timed
// by method, resource (the path's first segment: vm-cfg, virtual-machine-interface, fqname-to-id, … — never
// the uuid or name after it) and status class. A retry is an exchange of its own.
import { httpBuckets } from "../../observability/metrics/buckets.js";
import { LabelLimit } from "../../observability/metrics/labels.js";
import { metricPrefix, metricSet } from "../../observability/metrics/registry.js";

const labelNames = ["method", "resource", "status"] as const;

const metrics = metricSet((registry, prom) => ({
  agent: new prom.Histogram({
    name: `${metricPrefix}tf_agent_request_duration_seconds`,
    help: "Time of one HTTP exchange with the vRouter agent's port API, by method, resource and status class",
    labelNames,
    buckets: httpBuckets,
    registers: [registry],
  }),
  vnc: new prom.Histogram({
    name: `${metricPrefix}tf_vnc_request_duration_seconds`,
    help: "Time of one HTTP exchange with the VNC config API, by method, resource and status class",
    labelNames,
    buckets: httpBuckets,
    registers: [registry],
  }),
  // Resources are TF schema type names our code asks for; the cap only guards against surprises.
  resources: new LabelLimit(100),
}));

/** The resource label of a request path: its first segment ("/" for the API root). */
export function resourceOf(path: string): string {
  return (
    path
      .split("?", 1)[0]!
      .split("/")
      .find((s) => s !== "") ?? "/"
  );
}

/** 2xx, 4xx, …; "none" when no answer came (refused, reset, timed out). */
const statusClass = (status: number): string => (status > 0 ? `${Math.floor(status / 100)}xx` : "none");

/** Runs one exchange with `api`, timing it while metrics are on. */
export function timedTfCall<A extends { status: number }>(
  api: "agent" | "vnc",
  method: string,
  path: string,
  exchange: () => Promise<A>,
): Promise<A> {
  const m = metrics();
  if (!m) return exchange();
  const t0 = performance.now();
  const observe = (status: number): void =>
    m[api].observe(
      { method, resource: m.resources.value(resourceOf(path)), status: statusClass(status) },
      (performance.now() - t0) / 1000,
    );
  return exchange().then(
    (a) => {
      observe(a.status);
      return a;
    },
    (err: unknown) => {
      observe(0);
      throw err;
    },
  );
}
