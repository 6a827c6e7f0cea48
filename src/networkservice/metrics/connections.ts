// The live-connections gauge: how many connections each hop holds, by network service and state, counted
// when Prometheus scrapes (from the hop's `begin`), so it cannot drift from what the hop really holds —
// timeouts, heals and Closes from inside the hop never pass the `metrics` element.
import { State, type Connection } from "../../api/connection.js";
import { serviceLabel } from "../../observability/metrics/labels.js";
import { metricPrefix, metricSet } from "../../observability/metrics/registry.js";

export interface ConnectionSource {
  /** The hop kind: nsmgr, forwarder, nse, nsc. */
  component: string;
  connections(): Iterable<Connection>;
  /** The state label of a connection; default its State name (UP, DOWN, …). A client says HEALING. */
  stateOf?(conn: Connection): string;
}

type Labels = { component: string; service: string; state: string };

const sources = new Set<ConnectionSource>();

const gauge = metricSet((registry, prom) => {
  // Label sets once seen are reported as 0 when empty, so "back to 0" is a value, not a missing series.
  const seen = new Map<string, Labels>();
  return new prom.Gauge({
    name: `${metricPrefix}networkservice_connections`,
    help: "Connections a hop holds now, by network service and state (HEALING: a client is healing it)",
    labelNames: ["component", "service", "state"] as const,
    registers: [registry],
    collect() {
      const counts = new Map<string, number>();
      for (const src of sources) {
        for (const c of src.connections()) {
          const labels = {
            component: src.component,
            service: serviceLabel(c.networkService),
            state: src.stateOf?.(c) ?? State[c.state] ?? "UNKNOWN",
          };
          const key = `${labels.component}\0${labels.service}\0${labels.state}`;
          seen.set(key, labels);
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
      for (const [key, labels] of seen) this.set(labels, counts.get(key) ?? 0);
    },
  });
});

/**
 * Counts `source`'s connections in the gauge while metrics are on; returns the undo, for the component's
 * stop(). With metrics off nothing is kept (a process making many clients holds no references to them).
 */
export function trackConnections(source: ConnectionSource): () => void {
  if (!gauge()) return () => undefined;
  sources.add(source);
  return () => {
    sources.delete(source);
  };
}
