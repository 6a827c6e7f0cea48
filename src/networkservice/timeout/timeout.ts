// `timeout` (server): a connection whose client stops refreshing is closed when the previous hop's token
// expires (spec §2.5). Reset on every refresh; cleared on Close. This is how state is reclaimed when a client
// vanishes.
import type { NetworkServiceElement } from "../../core/chain.js";
import { timestampToMs } from "../../core/time.js";
import { eventFactory } from "../begin/begin.js";

const timerKey = Symbol("timeout.timer");

export function timeoutServer(): NetworkServiceElement {
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
      if (prev?.expires && events) {
        const delay = Math.max(0, timestampToMs(prev.expires) - Date.now());
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
