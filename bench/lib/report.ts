// Number formatting and aligned tables for benchmark output.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cols: string[]): string =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) console.log(line(r));
}

/** One round of a closed-loop load: latencies of the calls that succeeded, wall time, failures. */
export interface RoundResult {
  latenciesMs: number[];
  wallMs: number;
  errors: number;
  firstError?: string;
}

/** Every checked call of this run, and the ones that failed: a failed call has no latency sample. */
const tally = { calls: 0, failed: 0, where: [] as string[] };

/**
 * Counts a round's failed calls into the run's tally (writeResults prints it and puts it in the JSON). Up to
 * 1% failed calls are a warning; more fail the benchmark.
 */
export function checkErrors(what: string, r: RoundResult, total: number): void {
  tally.calls += total;
  tally.failed += r.errors;
  if (r.errors === 0) return;
  const msg = `${what}: ${r.errors}/${total} failed; first: ${r.firstError}`;
  tally.where.push(`${what}: ${r.errors}/${total}`);
  if (r.errors > total * 0.01) throw new Error(msg);
  console.error(`warning: ${msg}`);
}

/** Writes bench/results/<name>.json (flat metric → number), unless this is a --quick run. */
export function writeResults(file: string, results: Record<string, number>, quick: boolean): void {
  // Latency figures leave failed calls out, so how many there were is part of every result.
  results.failed_calls = tally.failed;
  results.checked_calls = tally.calls;
  console.log(
    `\nfailed calls: ${tally.failed} of ${tally.calls}${tally.where.length ? ` (${tally.where.join("; ")})` : ""}`,
  );
  if (quick) {
    console.log(`\n--quick: ${file} not written`);
    return;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${file}`);
}
