// `updatetoken` (upstream sdk pkg/networkservice/common/updatetoken): on the server side, the caller's path
// segment gets the token it presented in `nsm-client-token` and this hop's segment a fresh token of its own
// addressed to the caller; on the client side (src/networkservice/connect), every call carries a token
// addressed to the next hop's SPIFFE ID, learnt from its TLS certificate before the first call.
import type { Connection } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";
import { msToTimestamp } from "../../core/time.js";
import { callerId } from "../../security/caller.js";
import { tokenFromMetadata, type GeneratedToken } from "../../security/token.js";

/** Signs a token of this hop's identity for `audience` (cached while fresh). */
export type Signer = (audience: string[]) => Promise<GeneratedToken>;

async function stamp(conn: Connection, ctx: CallContext, sign: Signer): Promise<void> {
  const path = conn.path;
  if (!path) return;
  const presented = tokenFromMetadata(ctx.metadata);
  const prev = path.pathSegments[path.index - 1];
  if (presented && prev) {
    prev.token = presented.token;
    prev.expires = msToTimestamp(presented.expires.getTime());
  }
  const caller = callerId(ctx);
  const own = await sign(caller ? [caller] : []);
  const seg = path.pathSegments[path.index];
  if (seg) {
    seg.token = own.token;
    seg.expires = msToTimestamp(own.expires.getTime());
  }
}

export function updateTokenServer(sign: Signer): NetworkServiceElement {
  return {
    name: "updatetoken",
    async request(req, ctx, next) {
      if (req.connection) await stamp(req.connection, ctx, sign);
      return next.request(req, ctx);
    },
    async close(conn, ctx, next) {
      await stamp(conn, ctx, sign);
      return next.close(conn, ctx);
    },
  };
}
