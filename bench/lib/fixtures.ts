// Records and helpers shared by the registry benchmark and its registry child process.
import type { NetworkServiceEndpoint } from "../../src/api/registry.js";
import { msToTimestamp } from "../../src/core/time.js";

/** NSEs per network service in the Find data set: find-by-service streams this many records. */
export const nsesPerService = 100;

/** Name and service of the i-th preloaded NSE of the Find data set. */
export const storedName = (i: number): string => `nse-${i}`;
export const storedService = (i: number): string => `svc-${Math.floor(i / nsesPerService)}`;

/** An NSE shaped like a real registration: one service, per-service labels, a tcp URL. */
export function benchEndpoint(
  name: string,
  service: string,
  i: number,
  expiresAtMs?: number,
): NetworkServiceEndpoint {
  return {
    name,
    networkServiceNames: [service],
    networkServiceLabels: { [service]: { labels: { app: "bench", node: `node-${i % 50}` } } },
    url: `tcp://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:5003`,
    expirationTime: expiresAtMs === undefined ? undefined : msToTimestamp(expiresAtMs),
    initialRegistrationTime: undefined,
    pathIds: [],
  };
}

/** Nearest-rank percentile of an ascending array (p in 0..1). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) throw new Error("percentile of no samples");
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1]!;
}

export function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** Deterministic PRNG (mulberry32) so every run queries the same sequence of names. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
