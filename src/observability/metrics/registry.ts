// The process's metrics registry (one process = one component, so one registry). Metrics are off until
// `enableMetrics()`; while off, every instrumented place asks `metricSet()` for its metrics, gets undefined
// and does nothing else, so a component without --metrics-listen-on pays one branch per call, and does not
// even load prom-client (~35 ms of start-up): it is imported when metrics are turned on.
import type { Registry } from "prom-client";

/** prom-client's module, handed to metric definitions (loaded only when metrics are on). */
export type PromClient = typeof import("prom-client");

/** Prefix of every metric nsm-ts defines itself; Node's default metrics keep their usual names. */
export const metricPrefix = "nsm_";

let current: { registry: Registry; prom: PromClient } | undefined;

/**
 * Turns metrics on for this process (idempotent) and returns the registry: our own metrics plus prom-client's
 * defaults (CPU, resident memory, heap, event-loop delay, GC, open descriptors). Call it before starting
 * components: they register their connection and registry gauges only when metrics are on.
 */
export async function enableMetrics(): Promise<Registry> {
  if (current) return current.registry;
  const prom = await import("prom-client");
  if (!current) {
    const registry = new prom.Registry();
    prom.collectDefaultMetrics({ register: registry });
    current = { registry, prom };
  }
  return current.registry;
}

/** The registry while metrics are on, else undefined. */
export function metricsRegistry(): Registry | undefined {
  return current?.registry;
}

/** Turns metrics off again and forgets every value (tests; a process normally keeps them until it exits). */
export function disableMetrics(): void {
  current?.registry.clear();
  current = undefined;
}

/**
 * A group of metrics defined once per registry: `make` runs on first use after metrics are turned on (again),
 * so a file declares its metrics at module level without creating anything while metrics are off.
 */
export function metricSet<T>(make: (registry: Registry, prom: PromClient) => T): () => T | undefined {
  let made: { registry: Registry; set: T } | undefined;
  return () => {
    const on = current;
    if (!on) return undefined;
    if (made?.registry !== on.registry) made = { registry: on.registry, set: make(on.registry, on.prom) };
    return made.set;
  };
}
