// The agent's request routing as its RestServer does it: a table of (whole-path regex, method, handler),
// first match wins, anything else is 404 "Unknown Request". Regexes are matched against the path only, and
// UUIDs in them are lowercase, so an uppercase UUID is an unknown request, as on a real agent.

/** Status and JSON document of an answer. */
export type Reply = [number, unknown];

export interface AgentRequest {
  /** The regex's capture groups. */
  params: string[];
  /** The raw body: each handler parses it as the agent does (its errors quote the text). */
  body: string;
}

export type Handler = (req: AgentRequest) => Reply | Promise<Reply>;

export interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

export const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

export const route = (method: string, path: string, handler: Handler): Route => ({
  method,
  pattern: new RegExp(`^${path}$`),
  handler,
});

/** The agent's error document (`REST::SendErrorResponse`): 500 unless said otherwise. */
export const fail = (error: string, status = 500): Reply => [status, { error }];

export const ok: Reply = [200, {}];
export const notFound: Reply = fail("{ Not Found }", 404);

export function dispatch(
  routes: readonly Route[],
  method: string,
  path: string,
  body: string,
): Promise<Reply> {
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m && r.method === method) return Promise.resolve(r.handler({ params: m.slice(1), body }));
  }
  return Promise.resolve(fail("Unknown Request", 404));
}
