// Gauges of the records a registry holds (NetworkServices, NetworkServiceEndpoints), read from its tables
// when Prometheus scrapes: expiry and store events change them without passing any chain element.
import type { Gauge } from "prom-client";
import { metricPrefix, metricSet } from "../observability/metrics/registry.js";

export interface RecordSource {
  /** registry, or nsmgr when it keeps an in-memory registry of its own. */
  component: string;
  services(): number;
  endpoints(): number;
}

const sources = new Set<RecordSource>();

const sum = (component: string, of: (s: RecordSource) => number): number =>
  [...sources].filter((s) => s.component === component).reduce((n, s) => n + of(s), 0);

const gauges = metricSet((registry, prom) => {
  // Components once seen stay reported (as 0 once their tables are gone), not dropped from the scrape.
  const seen = new Set<string>();
  const gauge = (name: string, help: string, of: (s: RecordSource) => number): Gauge<"component"> =>
    new prom.Gauge({
      name: `${metricPrefix}${name}`,
      help,
      labelNames: ["component"] as const,
      registers: [registry],
      collect() {
        for (const s of sources) seen.add(s.component);
        for (const c of seen) this.set({ component: c }, sum(c, of));
      },
    });
  return [
    gauge("registry_network_services", "NetworkService records the registry holds", (s) => s.services()),
    gauge(
      "registry_network_service_endpoints",
      "NetworkServiceEndpoint records the registry holds (unexpired registrations)",
      (s) => s.endpoints(),
    ),
  ];
});

/** Reports `source`'s record counts while metrics are on; returns the undo, for the component's stop(). */
export function trackRecords(source: RecordSource): () => void {
  if (!gauges()) return () => undefined;
  sources.add(source);
  return () => {
    sources.delete(source);
  };
}
