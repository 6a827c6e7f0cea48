// Go-style durations ("1m", "1m30s", "200ms", "10s"), the form upstream NSM_* variables use.
const units: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a duration to milliseconds; throws naming the offending text. */
export function parseDuration(text: string, what = "duration"): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000; // bare number: seconds
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < trimmed.length) {
    re.lastIndex = pos;
    const m = re.exec(trimmed);
    if (!m) throw new Error(`${what}: cannot parse "${text}" (use forms like 500ms, 30s, 1m, 1h30m)`);
    total += Number(m[1]) * (units[m[2]!] ?? 0);
    pos = re.lastIndex;
  }
  if (trimmed.length === 0) throw new Error(`${what}: empty duration`);
  return total;
}
