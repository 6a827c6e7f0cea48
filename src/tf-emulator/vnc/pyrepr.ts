// Python's str() and repr() of a JSON value. The real server builds its error texts with `'%s' % value`
// on the request's parsed JSON, so True/False/None, single-quoted strings and `{'k': v}` dicts appear in the
// bodies clients match on; one helper keeps every such text consistent.

function reprString(s: string): string {
  // Python picks single quotes unless the text holds a single quote and no double quote.
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${quote}${out}${quote}`;
}

function reprNumber(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (!Number.isFinite(n)) return n > 0 ? "inf" : "-inf";
  // JSON integers arrive in Python as int (all digits); fractions as float (`1e-07` style exponents).
  if (Number.isInteger(n)) return BigInt(n).toString();
  const s = String(n);
  return s.includes("e") ? s.replace(/e([+-])(\d)$/, "e$10$2") : s;
}

/** `repr(value)` for a value parsed from JSON. */
export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return reprString(v);
  if (typeof v === "number") return reprNumber(v);
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  if (typeof v === "object")
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${reprString(k)}: ${pyRepr(x)}`)
      .join(", ")}}`;
  return "None"; // symbols and functions never come out of JSON.parse
}

/** `str(value)`: a string as it is, anything else as its repr. */
export const pyStr = (v: unknown): string => (typeof v === "string" ? v : pyRepr(v));

/** Python's `json.dumps(value)` with its defaults: `", "` and `": "` separators, non-ASCII as `\uXXXX`. */
export function pyJsonDumps(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(", ")}]`;
  if (typeof v === "object" && v !== null)
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${pyJsonDumps(k)}: ${pyJsonDumps(x)}`)
      .join(", ")}}`;
  if (typeof v === "number") return Number.isFinite(v) ? reprNumber(v) : "null";
  // JSON.stringify escapes like Python except for non-ASCII, which ensure_ascii writes as UTF-16 escapes.
  const s = JSON.stringify(v ?? null);
  return s.replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
