// Kernel-operation metrics: every rtnetlink request the data plane sends is timed here (the kernel's answer
// time, queueing behind the socket's earlier requests excluded), by operation: the rtnetlink message type
// (newlink, getaddr, …, with "_dump" for dumps), a fixed set. Failures are counted by errno name.
import { kernelBuckets } from "../observability/metrics/buckets.js";
import { metricPrefix, metricSet } from "../observability/metrics/registry.js";
import { DataplaneError } from "./errors.js";

const metrics = metricSet((registry, prom) => ({
  duration: new prom.Histogram({
    name: `${metricPrefix}dataplane_netlink_request_duration_seconds`,
    help: "Time the kernel took to answer one rtnetlink request, by message type (op)",
    labelNames: ["op"] as const,
    buckets: kernelBuckets,
    registers: [registry],
  }),
  errors: new prom.Counter({
    name: `${metricPrefix}dataplane_netlink_errors_total`,
    help: "rtnetlink requests the kernel refused or that failed, by message type (op) and errno name",
    labelNames: ["op", "errno"] as const,
    registers: [registry],
  }),
}));

const opNames: Record<number, string> = {
  16: "newlink",
  17: "dellink",
  18: "getlink",
  19: "setlink",
  20: "newaddr",
  21: "deladdr",
  22: "getaddr",
  24: "newroute",
  25: "delroute",
  26: "getroute",
  28: "newneigh",
  29: "delneigh",
  30: "getneigh",
  32: "newrule",
  33: "delrule",
  34: "getrule",
};

/** The op label of an rtnetlink request: its message type's name, "_dump" added for dumps. */
export function netlinkOp(type: number, dump: boolean): string {
  return `${opNames[type] ?? "other"}${dump ? "_dump" : ""}`;
}

/** Runs one kernel request of rtnetlink message `type`, timing it while metrics are on. */
export function timedNetlink<T>(type: number, dump: boolean, request: () => Promise<T>): Promise<T> {
  const m = metrics();
  if (!m) return request();
  const op = netlinkOp(type, dump);
  const t0 = performance.now();
  return request().then(
    (out) => {
      m.duration.observe({ op }, (performance.now() - t0) / 1000);
      return out;
    },
    (err: unknown) => {
      m.duration.observe({ op }, (performance.now() - t0) / 1000);
      m.errors.inc({ op, errno: err instanceof DataplaneError ? err.code : "other" });
      throw err;
    },
  );
}

/** A request timed elsewhere (the link-delete worker thread measures its own deletes). */
export function observeNetlink(op: string, seconds: number): void {
  metrics()?.duration.observe({ op }, seconds);
}
