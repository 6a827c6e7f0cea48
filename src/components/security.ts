// How a component authenticates (spec §5): its identity, the tokens it signs for each path segment and
// call, the policies it enforces, and its transport credentials. Without certificates a component uses a
// generated key pair (insecure transport, tokens carry their public key); with certificate files every link
// is mTLS and identities come from the certificates.
import { X509Certificate, type KeyObject } from "node:crypto";
import {
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
  type ServerCredentials,
} from "@grpc/grpc-js";
import type { Connection } from "../api/connection.js";
import type { NetworkServiceElement } from "../core/chain.js";
import type { CallContext } from "../core/context.js";
import { permissionDenied } from "../core/errors.js";
import { msToTimestamp } from "../core/time.js";
import type { CallSecurity } from "../networkservice/connect/connect.js";
import { channelCredentials, secureChannelOptions, serverCredentials } from "../security/credentials.js";
import { generatedIdentity, loadIdentity, type Identity, type IdentityFiles } from "../security/identity.js";
import { serverPolicies } from "../security/policy.js";
import {
  decodeToken,
  defaultTokenLifetimeMs,
  generateToken,
  tokenFromMetadata,
  tokenMetadata,
  type GeneratedToken,
} from "../security/token.js";

export interface Security extends CallSecurity {
  readonly identity: Identity;
  readonly tokenLifetimeMs: number;
  /** `updatetoken`: signs this hop's segment and records the token the caller presented for its own. */
  updateToken(): NetworkServiceElement;
  /** `authorize`: the default server policies (tokens valid, unexpired, chained, caller-signed). */
  authorize(): NetworkServiceElement;
  serverCredentials(): ServerCredentials;
  channelCredentials(): ChannelCredentials | undefined;
  channelOptions(): ChannelOptions;
  /** A token of this identity for `audience` (cached while fresh). */
  readonly sign: (audience: string[]) => Promise<GeneratedToken>;
  /** Whether server-side policies are enforced. */
  readonly enforce: boolean;
}

export interface SecurityOptions {
  /** Component name: the generated identity is spiffe://nsm-ts.local/<name>. */
  name: string;
  files?: IdentityFiles;
  tokenLifetimeMs?: number;
  /** Enforce the server policies (default true). */
  authorize?: boolean;
}

export function createSecurity(opts: SecurityOptions): Security {
  const identity = opts.files ? loadIdentity(opts.files) : generatedIdentity(opts.name);
  const lifetime = opts.tokenLifetimeMs ?? defaultTokenLifetimeMs;
  const enforce = opts.authorize ?? true;
  const secure = opts.files !== undefined;

  // Signing costs ~0.1 ms: reuse a token per audience while it still has 90% of its life left.
  const cache = new Map<string, GeneratedToken>();
  const token = async (aud: string[]): Promise<GeneratedToken> => {
    const key = aud.join(",");
    const hit = cache.get(key);
    if (hit && hit.expires.getTime() - Date.now() > lifetime * 0.9) return hit;
    const fresh = await generateToken(identity, aud, lifetime);
    cache.set(key, fresh);
    return fresh;
  };

  const peerKeys = new Map<string, KeyObject>();
  const callerKey = (ctx: CallContext): KeyObject | "embedded" | undefined => {
    if (!secure) return "embedded";
    if (!ctx.peerCertificate) return undefined;
    // One KeyObject per peer certificate: verifications are cached per key object.
    const der = ctx.peerCertificate.toString("base64");
    let k = peerKeys.get(der);
    if (!k) {
      if (peerKeys.size > 256) peerKeys.clear();
      peerKeys.set(der, (k = new X509Certificate(ctx.peerCertificate).publicKey));
    }
    return k;
  };

  const stampPath = async (conn: Connection, ctx: CallContext): Promise<void> => {
    const path = conn.path;
    if (!path) return;
    const presented = tokenFromMetadata(ctx.metadata);
    const prev = path.pathSegments[path.index - 1];
    if (presented && prev) {
      prev.token = presented.token;
      prev.expires = msToTimestamp(presented.expires.getTime());
    }
    let peer: string | undefined;
    try {
      peer = presented ? decodeToken(presented.token).sub : undefined;
    } catch {
      peer = undefined; // authorize rejects the malformed token
    }
    const own = await token(peer ? [peer] : []);
    const seg = path.pathSegments[path.index];
    if (seg) {
      seg.token = own.token;
      seg.expires = msToTimestamp(own.expires.getTime());
    }
  };

  // The identity that first requested a connection is the only one that may refresh or close it. (Under
  // mTLS the identity is proven by the certificate; without certificates it is the token's claim, which a
  // restarted caller keeps because it keeps its name, unlike its generated key.)
  const pinnedKey = Symbol("authorize.caller");
  const check = async (conn: Connection, ctx: CallContext): Promise<void> => {
    if (!enforce || !conn.path || ctx.internal) return;
    const key = callerKey(ctx);
    if (key === undefined)
      throw permissionDenied("no sufficient privileges: the caller presented no TLS certificate");
    const presented = tokenFromMetadata(ctx.metadata)?.token;
    await serverPolicies(conn.path, { callerKey: key, presentedToken: presented });
    if (presented && ctx.connection) {
      const caller = decodeToken(presented).sub ?? "";
      const pinned = ctx.connection.server.get(pinnedKey) as string | undefined;
      if (pinned === undefined) ctx.connection.server.set(pinnedKey, caller);
      else if (pinned !== caller)
        throw permissionDenied(`no sufficient privileges: connection ${conn.id} belongs to another caller`);
    }
  };

  // Who answers at each URL, learnt from the responses' path (the next segment's token subject).
  const peers = new Map<string, string>();

  return {
    identity,
    tokenLifetimeMs: lifetime,
    sign: token,
    enforce,
    updateToken: () => ({
      name: "updatetoken",
      async request(req, ctx, next) {
        await stampPath(req.connection!, ctx);
        return next.request(req, ctx);
      },
      async close(conn, ctx, next) {
        await stampPath(conn, ctx);
        return next.close(conn, ctx);
      },
    }),
    authorize: () => ({
      name: "authorize",
      async request(req, ctx, next) {
        await check(req.connection!, ctx);
        return next.request(req, ctx);
      },
      async close(conn, ctx, next) {
        await check(conn, ctx);
        return next.close(conn, ctx);
      },
    }),
    callMetadata: async (_ctx, url) => {
      const peer = peers.get(url);
      const t = await token(peer ? [peer] : []);
      return tokenMetadata(t.token, t.expires, new Metadata());
    },
    learnPeer: (url, conn) => {
      const next = conn.path?.pathSegments[conn.path.index + 1]?.token;
      if (!next || peers.has(url)) return;
      try {
        const sub = decodeToken(next).sub;
        if (sub) peers.set(url, sub);
      } catch {
        /* not a token we can read: keep sending no audience */
      }
    },
    serverCredentials: () => serverCredentials(secure ? identity : undefined),
    channelCredentials: () => (secure ? channelCredentials(identity) : undefined),
    channelOptions: () => secureChannelOptions(secure ? identity : undefined),
  };
}
