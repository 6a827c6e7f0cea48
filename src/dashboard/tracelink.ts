// The trace link of a connection: a Jaeger UI search for the traces of its path. Every hop's span carries
// nsm.path.id (the path's first segment id, src/observability/tracing/spans.ts), and the client's spans are
// exported under its own name as service.name — the path's first segment name — so the search finds the
// traces its Requests (refreshes, heals) started, newest first.

/** `${base}/search?service=<client>&tags={"nsm.path.id":"<id>"}`, URL-encoded; undefined without a base. */
export function traceLink(base: string | undefined, client: string, pathId: string): string | undefined {
  if (!base) return undefined;
  const root = base.replace(/\/+$/, "");
  const tags = JSON.stringify({ "nsm.path.id": pathId });
  return `${root}/search?service=${encodeURIComponent(client)}&tags=${encodeURIComponent(tags)}`;
}
