// `authorize` on the client side (upstream authorize.NewClient, as cmd-nsc uses it): the response of the
// next hop passes the client policies — every token valid, unexpired and chained, and the next hop's token
// signed by the key of the certificate that server presented. A refused response is closed again, so the
// connection the server made does not linger, and the Request fails with PERMISSION_DENIED.
import type { NetworkServiceElement } from "../../core/chain.js";
import { toStatusError } from "../../core/errors.js";
import { clientUrl } from "../clienturl/clienturl.js";
import { checkPolicies, clientPolicyList, type Policy } from "../../security/policy.js";
import type { PeerCert } from "../../security/caller.js";

export interface AuthorizeClientOptions {
  policies?: readonly Policy[];
  insecure: boolean;
  /** The certificate the server at `url` presented in its last handshake. */
  peerOf: (url: string) => PeerCert | undefined;
  /** Our current trust bundle (PEM), for tokens signed after the server's SVID rotated. */
  trustBundle?: () => string | undefined;
}

export function authorizeClient(opts: AuthorizeClientOptions): NetworkServiceElement {
  const policies = opts.policies ?? clientPolicyList;
  return {
    name: "authorize",
    async request(req, ctx, next) {
      const conn = await next.request(req, ctx);
      const url = clientUrl(ctx);
      const peer = url ? opts.peerOf(url) : undefined;
      try {
        await checkPolicies(policies, {
          path: conn.path ?? { index: 0, pathSegments: [] },
          ...(peer?.spiffeId ? { peerId: peer.spiffeId } : {}),
          ...(peer ? { peerKey: peer.publicKey } : {}),
          insecure: opts.insecure,
          now: new Date(),
          ...(opts.trustBundle?.() ? { trustBundlePem: opts.trustBundle() } : {}),
        });
      } catch (err) {
        await next
          .close(conn, ctx)
          .catch((e: unknown) =>
            ctx.log.warn(
              { connId: conn.id, err: toStatusError(e).details },
              "closing a refused connection failed",
            ),
          );
        throw err;
      }
      return conn;
    },
    close: (conn, ctx, next) => next.close(conn, ctx),
  };
}
