// `authmonitor` (upstream sdk pkg/networkservice/common/authmonitor, now pkg/tools/monitorconnection/authorize,
// with policy monitor/service_connection.rego): which connections a caller may watch on MonitorConnections.
//
// Upstream binds connections to callers when they are requested: the `authorize` server element records, per
// Request, the caller's SPIFFE ID (from its TLS certificate) → the `id` of the caller's own path segment
// (index − 1). The policy then admits a MonitorConnections call whose selector names, by path segment `id`, at
// least one connection recorded for the caller's SPIFFE ID. So upstream matches on path segment ids bound to
// the certificate at Request time — not on segment names, and not on token `sub`s.
//
// Here the same binding is kept by `monitorServer` (monitor.ts): each connection's owner is callerId() of the
// last Request for it from outside this process (the certificate's SPIFFE ID under mTLS, the token's claimed
// `sub` in insecure mode). A connection is shown to a caller exactly when its owner is the caller — i.e. the
// caller's own segment in its path is one that caller requested with. It is applied as a filter on the
// initial snapshot and on every later event rather than as upstream's admission check: our own hops select
// by segment name with no ids (which upstream's check would refuse), and a selector naming someone else's
// connection then yields nothing instead of everything it names. A caller without an identity is refused.
import type { Connection } from "../../api/connection.js";
import type { CallContext } from "../../core/context.js";
import { permissionDenied } from "../../core/errors.js";
import { callerId } from "../../security/caller.js";

/** Whether a subscriber may see `conn`, whose owner (requesting identity) is `owner`. */
export type MonitorFilter = (conn: Connection, owner: string | undefined) => boolean;

/**
 * The filter for the caller of `ctx`; throws PERMISSION_DENIED when it has no identity. Identities in `seeAll`
 * (operators' tools) see every connection.
 */
export function authMonitor(ctx: CallContext, seeAll: readonly string[] = []): MonitorFilter {
  const caller = callerId(ctx);
  if (caller === undefined || caller === "") {
    throw permissionDenied(
      "MonitorConnections: the caller has no identity (no TLS certificate with a SPIFFE ID, no token): it may watch no connections",
    );
  }
  if (seeAll.includes(caller)) return () => true;
  return (_conn, owner) => owner === caller;
}
