// `refresh` (client, NSC only): re-requests the connection before the shortest token on its path expires
// (spec §2.5: delay = min(expires − now) × scale, scale 1/3 for a one-segment path, else 0.2 + 0.2·index/len),
// retrying every 200 ms on failure. Cancelled by Close.
import type { Connection } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { timestampToMs } from "../../core/time.js";
import { eventFactory } from "../begin/begin.js";

const timerKey = Symbol("refresh.timer");
export const refreshRetryMs = 200;

export function refreshDelayMs(conn: Connection, now = Date.now()): number | undefined {
  const segs = conn.path?.pathSegments ?? [];
  let min = Infinity;
  for (const s of segs) if (s.expires) min = Math.min(min, timestampToMs(s.expires) - now);
  if (!Number.isFinite(min)) return undefined;
  const index = conn.path?.index ?? 0;
  const scale = segs.length <= 1 ? 1 / 3 : 0.2 + (0.2 * index) / segs.length;
  return Math.max(0, min * scale);
}

export function refreshClient(): NetworkServiceElement {
  return {
    name: "refresh",
    async request(req, ctx, next) {
      const out = await next.request(req, ctx);
      const meta = ctx.connMeta(true);
      clearTimeout(meta.get(timerKey) as NodeJS.Timeout | undefined);
      const events = eventFactory(ctx);
      const delay = refreshDelayMs(out);
      if (events && delay !== undefined) {
        // The timer lives as long as the connection: it holds the logger and id, not the whole call.
        const log = ctx.log;
        const connId = out.id;
        const fire = (): void => {
          events.request().catch((err: unknown) => {
            if (!meta.has(timerKey)) return; // closed meanwhile
            log.warn({ connId, err }, "refresh failed, retrying");
            const t = setTimeout(fire, refreshRetryMs);
            t.unref();
            meta.set(timerKey, t);
          });
        };
        const t = setTimeout(fire, delay);
        t.unref();
        meta.set(timerKey, t);
      }
      return out;
    },
    async close(conn, ctx, next) {
      const meta = ctx.connMeta(true);
      clearTimeout(meta.get(timerKey) as NodeJS.Timeout | undefined);
      meta.delete(timerKey);
      return next.close(conn, ctx);
    },
  };
}
