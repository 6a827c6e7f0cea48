// The process's metrics registry (one process = one component, so one registry). Metrics are off until
// `enableMetrics()`; while off, every instrumented place asks `metricSet()` for its metrics, gets undefined
// and does nothing else, so a component without --metrics-listen-on pays one branch per call.
import { Registry, collectDefaultMetrics } from "prom-client";

/** Prefix of every metric nsm-ts defines itself; Node's default metrics keep their usual names. */
export const metricPrefix = "nsm_";

let current: Registry | undefined;

/**
 * Turns metrics on for this process (idempotent) and returns the registry: our own metrics plus prom-client's
 * defaults (CPU, resident memory, heap, event-loop delay, GC, open descriptors). Call it before starting
 * components: they register their connection and registry gauges only when metrics are on.
 */
export function enableMetrics(): Registry {
  if (current) return current;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  current = registry;
  return registry;
}

/** The registry while metrics are on, else undefined. */
export function metricsRegistry(): Registry | undefined {
  return current;
}

/** Turns metrics off again and forgets every value (tests; a process normally keeps them until it exits). */
export function disableMetrics(): void {
  current?.clear();
  current = undefined;
}

/**
 * A group of metrics defined once per registry: `make` runs on first use after metrics are turned on (again),
 * so a file declares its metrics at module level without creating anything while metrics are off.
 */
export function metricSet<T>(make: (registry: Registry) => T): () => T | undefined {
  let made: { registry: Registry; set: T } | undefined;
  return () => {
    const registry = current;
    if (!registry) return undefined;
    if (made?.registry !== registry) made = { registry, set: make(registry) };
    return made.set;
  };
}
