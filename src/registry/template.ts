// Selector label values are Go text/template strings rendered with the client's labels as data (spec §4.3):
// "{{.nodeName}}" means "the client's nodeName". We support what NSM selectors use — field actions {{.key}}
// and {{index . "key"}}, with optional spaces and {{- -}} trimming — and, like upstream, fall back to the literal text on anything
// we cannot render. A key missing from the labels renders as Go's "<no value>".
const action = /\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}/gs;

export function renderTemplate(text: string, data: Record<string, string>): string {
  if (!text.includes("{{")) return text;
  let out = "";
  let last = 0;
  for (const m of text.matchAll(action)) {
    let before = text.slice(last, m.index);
    if (m[1]) before = before.trimEnd();
    const expr = m[2]!;
    // {{.key}}, or the older NSM docs' form {{index . "key"}}
    const key =
      /^\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(expr)?.[1] ?? /^index\s+\.\s+"([^"\\]*)"$/.exec(expr)?.[1];
    if (key === undefined) return text; // other functions, pipelines, nested fields: literal, as upstream on error
    out += before + (Object.hasOwn(data, key) ? data[key] : "<no value>");
    last = m.index + m[0].length;
    if (m[3]) {
      const rest = text.slice(last);
      last += rest.length - rest.trimStart().length;
    }
  }
  const tail = text.slice(last);
  if (tail.includes("{{")) return text; // an unclosed action is a parse error upstream: literal
  return out + tail;
}

/**
 * a ⊇ b: every key of b is in a with b's value, or with b's value rendered as a template over `data`.
 * Mirrors upstream's length precheck (len(a) >= len(b)).
 */
export function isSubset(
  a: Record<string, string> | undefined,
  b: Record<string, string> | undefined,
  data: Record<string, string>,
): boolean {
  const have = a ?? {};
  const want = Object.entries(b ?? {});
  if (Object.keys(have).length < want.length) return false;
  for (const [k, v] of want) {
    // As in Go, a missing key reads as "": a selector value "" matches labels without the key.
    const got = have[k] ?? "";
    if (got === v) continue;
    if (got !== renderTemplate(v, data)) return false;
  }
  return true;
}
