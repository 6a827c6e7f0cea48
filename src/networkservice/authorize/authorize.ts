// `authorize` (upstream sdk pkg/networkservice/common/authorize, server side): runs the policies over the
// left side of the path (segments 0..index) on every Request and Close from outside this process, and pins
// each connection to the identity that created it: only that caller may refresh or close it. The caller's
// identity is its certificate's SPIFFE ID under mTLS, its token's claim in (explicit) insecure mode.
import type { Connection } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";
import { permissionDenied, unauthenticated } from "../../core/errors.js";
import { callerId, peerCert } from "../../security/caller.js";
import { checkPolicies, serverPolicyList, type Policy } from "../../security/policy.js";

export interface AuthorizeOptions {
  /** Policies to run (default: upstream's server set: tokens valid, expired, chained, prev token signed). */
  policies?: readonly Policy[];
  /** The hop runs without TLS (explicit opt-in): signatures cannot be checked. */
  insecure: boolean;
  /** Our current trust bundle (PEM), for tokens signed after the caller's SVID rotated. */
  trustBundle?: () => string | undefined;
}

const pinnedKey = Symbol("authorize.caller");

export function authorizeServer(opts: AuthorizeOptions): NetworkServiceElement {
  const policies = opts.policies ?? serverPolicyList;
  const check = async (conn: Connection, ctx: CallContext, close: boolean): Promise<void> => {
    if (ctx.internal) return;
    if (!conn.path) throw permissionDenied("no sufficient privileges: the connection has no path");
    const cert = peerCert(ctx.peerCertificate);
    if (!cert && !opts.insecure)
      throw unauthenticated("no sufficient privileges: the caller presented no TLS certificate");
    const caller = callerId(ctx);
    if (caller === undefined)
      throw unauthenticated("no sufficient privileges: the caller has no identity (no SPIFFE ID, no token)");
    await checkPolicies(policies, {
      path: conn.path,
      peerId: caller,
      ...(cert ? { peerKey: cert.publicKey } : {}),
      insecure: opts.insecure,
      now: new Date(),
      close,
      ...(opts.trustBundle?.() ? { trustBundlePem: opts.trustBundle() } : {}),
    });
    if (!ctx.connection) return;
    const pinned = ctx.connection.server.get(pinnedKey) as string | undefined;
    if (pinned === undefined) ctx.connection.server.set(pinnedKey, caller);
    else if (pinned !== caller)
      throw permissionDenied(
        `no sufficient privileges: connection ${conn.id} belongs to ${pinned}, not to ${caller}`,
      );
  };
  return {
    name: "authorize",
    async request(req, ctx, next) {
      if (req.connection) await check(req.connection, ctx, false);
      return next.request(req, ctx);
    },
    async close(conn, ctx, next) {
      await check(conn, ctx, true);
      return next.close(conn, ctx);
    },
  };
}
