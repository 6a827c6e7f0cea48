// `timeout` (server): a connection whose client stops refreshing is closed when the previous hop's token
// expires (spec §2.5). Reset on every refresh; cleared on Close. This is how state is reclaimed when a client
// vanishes.
//
// The expiry is untrusted input: `nsm-client-token-expires` metadata (copied into the caller's path segment by
// updatetoken) is whatever the caller wrote, so the deadline is min(that, the `exp` of the token the caller
// presented, now + maxTimeoutMs) — a caller cannot keep state here longer than its own token says, nor for
// weeks by signing a far-off `exp`.
import type { PathSegment } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { timestampToMs } from "../../core/time.js";
import { decodeToken, tokenKey } from "../../security/token.js";
import { eventFactory } from "../begin/begin.js";

const timerKey = Symbol("timeout.timer");

/**
 * Longest a connection lives here without a refresh, whatever its caller's expiry says (1 h). A hop whose own
 * token lives longer raises it to that: callers refresh before the shortest token on the path runs out, ours
 * included, so waiting as long as our own token is always safe.
 */
export const defaultMaxTimeoutMs = 60 * 60_000;

export interface TimeoutOptions {
  /** Cap on the time to a close without refresh (default defaultMaxTimeoutMs). */
  maxTimeoutMs?: number;
}

/** When the connection must be closed if not refreshed (ms since the epoch); undefined: no expiry known. */
export function timeoutDeadline(
  prev: PathSegment,
  own: PathSegment | undefined,
  maxTimeoutMs: number,
  presentedToken?: string,
  now = Date.now(),
): number | undefined {
  if (!prev.expires) return undefined;
  let at = timestampToMs(prev.expires);
  // The segment's token is the one presented (updatetoken put it there); a chain without updatetoken still
  // has the metadata's.
  for (const token of [prev.token, presentedToken]) {
    const exp = token ? tokenExpMs(token) : undefined;
    if (exp !== undefined) at = Math.min(at, exp);
  }
  const ownLeft = own?.expires ? timestampToMs(own.expires) - now : 0;
  return Math.min(at, now + Math.max(maxTimeoutMs, ownLeft));
}

/** The `exp` of a token in ms, undefined when there is no readable token or it has no `exp`. */
function tokenExpMs(token: string): number | undefined {
  try {
    const exp = decodeToken(token).exp;
    return exp === undefined ? undefined : exp * 1000;
  } catch {
    return undefined; // authorize refuses a malformed token; here the other bounds still hold
  }
}

export function timeoutServer(opts: TimeoutOptions = {}): NetworkServiceElement {
  const maxTimeoutMs = opts.maxTimeoutMs ?? defaultMaxTimeoutMs;
  return {
    name: "timeout",
    async request(req, ctx, next) {
      const out = await next.request(req, ctx);
      const meta = ctx.connMeta();
      clearTimeout(meta.get(timerKey) as NodeJS.Timeout | undefined);
      // Inside the chain the path index is this hop's own segment; the caller's is the one before.
      const path = out.path ?? req.connection!.path;
      const prev = path ? path.pathSegments[path.index - 1] : undefined;
      const events = eventFactory(ctx);
      const presented = ctx.metadata.get(tokenKey)[0];
      const at = prev
        ? timeoutDeadline(
            prev,
            path!.pathSegments[path!.index],
            maxTimeoutMs,
            typeof presented === "string" ? presented : undefined,
          )
        : undefined;
      if (at !== undefined && events) {
        const delay = Math.max(0, at - Date.now());
        // The timer lives as long as the connection: it holds the logger and id, not the whole call
        // (metadata, signal, the returned connection), which would otherwise stay on the heap with it.
        const log = ctx.log;
        const connId = out.id;
        const timer = setTimeout(
          () => {
            log.info({ connId }, "client stopped refreshing: closing the connection");
            events.close().catch((err: unknown) => log.warn({ err }, "timeout close failed"));
          },
          Math.min(delay, 2 ** 31 - 1),
        );
        timer.unref();
        meta.set(timerKey, timer);
      }
      return out;
    },
    async close(conn, ctx, next) {
      clearTimeout(ctx.connMeta().get(timerKey) as NodeJS.Timeout | undefined);
      ctx.connMeta().delete(timerKey);
      return next.close(conn, ctx);
    },
  };
}
