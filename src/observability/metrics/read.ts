// Reading a value back from the registry in-process: for tests and debugging, without an HTTP scrape.
import { metricsRegistry } from "./registry.js";

/**
 * The sum of the series named `series` (a histogram's `_count`, `_sum` or `_bucket` too) whose labels
 * include `labels`; undefined when metrics are off or no series matches.
 */
export async function metricValue(
  series: string,
  labels: Record<string, string | number> = {},
): Promise<number | undefined> {
  const registry = metricsRegistry();
  const metric =
    registry?.getSingleMetric(series) ??
    registry?.getSingleMetric(series.replace(/_(bucket|count|sum)$/, ""));
  if (!metric) return undefined;
  const { values } = await metric.get();
  // Histograms name each value's series (metricName); counters and gauges leave it out.
  const hits = values.filter(
    (v) =>
      ((v as { metricName?: string }).metricName ?? series) === series &&
      Object.entries(labels).every(([k, x]) => String(v.labels[k]) === String(x)),
  );
  return hits.length === 0 ? undefined : hits.reduce((n, v) => n + v.value, 0);
}
