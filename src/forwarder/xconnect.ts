// `xconnect` (forwarder): once the rest of the chain has the outgoing leg accepted, hand both legs to the
// data plane; on Close, release them. If plumbing fails the outgoing leg is closed again, so a failed
// Request leaves nothing behind downstream either.
import { Connection } from "../api/connection.js";
import type { NetworkServiceElement, NetworkServiceNext } from "../core/chain.js";
import type { CallContext } from "../core/context.js";
import { outgoingMechanism } from "../networkservice/mechanisms/mechanisms.js";
import type { DataPlane, Leg } from "./dataplane.js";

const legsKey = Symbol("xconnect.legs");

export function xconnect(dp: DataPlane): NetworkServiceElement {
  return {
    name: "xconnect",
    async request(req, ctx, next: NetworkServiceNext) {
      const incomingMech = req.connection!.mechanism!;
      const out = await next.request(req, ctx);
      const outMech = outgoingMechanism(ctx);
      if (!outMech) throw new Error("xconnect: the outgoing leg has no mechanism");
      // A copy: elements above rewrite the returned connection (ids, path) for the previous hop, and Close
      // must see the connection exactly as apply did.
      const seen = Connection.fromPartial(out);
      const legs: [Leg, Leg] = [
        { conn: seen, mechanism: incomingMech },
        { conn: seen, mechanism: outMech },
      ];
      const established = ctx.connMeta().has(legsKey);
      try {
        await dp.apply(legs[0], legs[1], ctx);
      } catch (err) {
        // A failed first setup is undone; a failed refresh leaves the working connection alone.
        if (!established) {
          await next.close(out, ctx).catch(() => undefined);
          await dp.release(legs[0], legs[1], ctx).catch(() => undefined);
        }
        throw err;
      }
      ctx.connMeta().set(legsKey, legs);
      return out;
    },
    async close(conn, ctx: CallContext, next) {
      const legs = ctx.connMeta().get(legsKey) as [Leg, Leg] | undefined;
      ctx.connMeta().delete(legsKey);
      try {
        if (legs) await dp.release(legs[0], legs[1], ctx);
      } finally {
        await next.close(conn, ctx);
      }
    },
  };
}
