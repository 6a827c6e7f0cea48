// How a component authenticates (spec §5): its identity source (an X.509-SVID from the SPIFFE Workload API or
// from files, rotated in place), the tokens it signs, the `updatetoken` and `authorize` elements it puts in
// its chains, and its transport credentials. Secure unless `insecure` is asked for explicitly: then links are
// plaintext, the identity is a generated key pair and nobody is authenticated.
import {
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
  type ServerCredentials,
} from "@grpc/grpc-js";
import type { NetworkServiceElement } from "../core/chain.js";
import type { CallContext } from "../core/context.js";
import type { GrpcClient } from "../core/client.js";
import { unavailable } from "../core/errors.js";
import type { CallSecurity } from "../networkservice/connect/connect.js";
import { authorizeServer } from "../networkservice/authorize/authorize.js";
import { authorizeClient } from "../networkservice/authorize/client.js";
import { updateTokenServer } from "../networkservice/updatetoken/updatetoken.js";
import { peerCert, type PeerCert } from "../security/caller.js";
import {
  channelCredentials,
  secureChannelOptions,
  serverCredentials,
  trustDomainAuthorizer,
  trustDomainOf,
  type PeerAuthorizer,
} from "../security/credentials.js";
import {
  generatedIdentity,
  hasCertificate,
  type Identity,
  type IdentityFiles,
} from "../security/identity.js";
import type { Policy } from "../security/policy.js";
import type { Limits } from "./limits.js";
import { FileIdentitySource, StaticIdentitySource, type IdentitySource } from "../security/source.js";
import {
  decodeToken,
  defaultTokenLifetimeMs,
  generateToken,
  tokenMetadata,
  type GeneratedToken,
} from "../security/token.js";

export interface Security extends CallSecurity {
  /** The current identity (it changes when the SVID rotates). */
  readonly identity: Identity;
  readonly source: IdentitySource;
  /** Plaintext links, generated identity: explicitly asked for. */
  readonly insecure: boolean;
  readonly tokenLifetimeMs: number;
  /** Whether server-side policies are enforced. */
  readonly enforce: boolean;
  /** What the component lets in: bounds on streams, watchers, channels, dial targets, registrations. */
  readonly limits: Limits;
  /** Which peer SPIFFE IDs may talk to this component (by default its own trust domain). */
  readonly authorizePeer: PeerAuthorizer;
  /** A token of this identity for `audience` (cached while fresh and while the SVID is the same). */
  readonly sign: (audience: string[]) => Promise<GeneratedToken>;
  /** `updatetoken` for a server chain. */
  updateToken(): NetworkServiceElement;
  /** `authorize` for a server chain: the server policies, and connections pinned to their creator. */
  authorize(): NetworkServiceElement;
  /** `authorize` for a client chain: the client policies on every response. */
  authorizeClient(): NetworkServiceElement;
  /** The certificate the server at `url` presented in its last handshake (mTLS only). */
  peerOf(url: string): PeerCert | undefined;
  /** The audience of a token for a call to `url`: the peer's SPIFFE ID (waits for `client`'s handshake). */
  audience(url: string, client?: GrpcClient): Promise<string[]>;
  serverCredentials(): ServerCredentials;
  /** Credentials for a channel to `url`: its handshakes tell peerOf(url). */
  channelCredentials(url?: string): ChannelCredentials;
  channelOptions(): ChannelOptions;
  close(): void;
}

export interface SecurityOptions {
  /** Component name: the generated identity (insecure mode) is spiffe://nsm-ts.local/<name>. */
  name: string;
  /** Where the X.509-SVID comes from (Workload API, files, a test CA). */
  source?: IdentitySource;
  /** PEM files of the SVID, key and bundle: watched for rotation. */
  files?: IdentityFiles;
  /** Plaintext and unauthenticated: only when asked for, never the default. */
  insecure?: boolean;
  tokenLifetimeMs?: number;
  /** Enforce the server policies (default true). */
  authorize?: boolean;
  /** Trust domains whose SVIDs may call or serve us (default: our own; a federated list adds others). */
  trustDomains?: string[];
  /** Policies instead of upstream's defaults (upstream authorize.WithPolicies). */
  serverPolicies?: readonly Policy[];
  clientPolicies?: readonly Policy[];
  /** Bounds on what the component lets in (see Limits); unset fields keep each module's default. */
  limits?: Limits;
  /** Waits for the first call to a new peer's TLS handshake at most this long (default 5 s). */
  handshakeTimeoutMs?: number;
}

function sourceOf(opts: SecurityOptions): IdentitySource {
  if (opts.source) return opts.source;
  if (opts.files) return new FileIdentitySource(opts.files);
  if (opts.insecure) return new StaticIdentitySource(generatedIdentity(opts.name));
  throw new Error(
    `${opts.name}: no identity: give an X.509-SVID (SPIFFE_ENDPOINT_SOCKET, or --cert-file/--key-file/--ca-file), ` +
      `or run insecure explicitly (--insecure, NSM_INSECURE=true)`,
  );
}

export function createSecurity(opts: SecurityOptions): Security {
  const source = sourceOf(opts);
  const first = source.current();
  const insecure = !hasCertificate(first);
  if (insecure && !opts.insecure)
    throw new Error(
      `${opts.name}: the identity has no certificate; that is insecure mode, which must be asked for`,
    );
  const lifetime = opts.tokenLifetimeMs ?? defaultTokenLifetimeMs;
  const enforce = opts.authorize ?? true;
  const authorizePeer = trustDomainAuthorizer(opts.trustDomains ?? [trustDomainOf(first.spiffeId)]);

  // Signing costs ~0.1 ms: reuse a token per audience while it has 90% of its life left; a rotated SVID
  // makes every cached token stale (they were signed with the old key).
  const cache = new Map<string, GeneratedToken>();
  source.onRotate(() => cache.clear());
  const sign = async (aud: string[]): Promise<GeneratedToken> => {
    const key = aud.join(",");
    const hit = cache.get(key);
    if (hit && hit.expires.getTime() - Date.now() > lifetime * 0.9) return hit;
    const fresh = await generateToken(source.current(), aud, lifetime);
    if (cache.size >= 4096) cache.clear();
    cache.set(key, fresh);
    return fresh;
  };

  // Who answers at each URL: the certificate of the last handshake (mTLS), or the token subject of the
  // last response (insecure: nothing better is known, and only after a first call).
  const peers = new Map<string, PeerCert>();
  const learnt = new Map<string, string>();
  const handshakeMs = opts.handshakeTimeoutMs ?? 5_000;

  const audienceFor = async (url: string, client?: GrpcClient): Promise<string[]> => {
    if (insecure) {
      const sub = learnt.get(url);
      return sub ? [sub] : [];
    }
    let peer = peers.get(url);
    if (!peer && client) {
      // The first call on a new channel: the handshake names the peer, so wait for it (it is needed for the
      // call anyway) rather than send a token without audience, which upstream refuses.
      try {
        await client.waitReady(handshakeMs);
      } catch (e) {
        throw unavailable(`${url}: no TLS connection within ${handshakeMs} ms: ${(e as Error).message}`);
      }
      peer = peers.get(url);
    }
    return peer?.spiffeId ? [peer.spiffeId] : [];
  };

  return {
    get identity() {
      return source.current();
    },
    source,
    insecure,
    limits: opts.limits ?? {},
    tokenLifetimeMs: lifetime,
    enforce,
    authorizePeer,
    sign,
    updateToken: () => updateTokenServer(sign),
    authorize: () =>
      enforce
        ? authorizeServer({
            insecure,
            trustBundle: () => source.current().caPem,
            ...(opts.serverPolicies ? { policies: opts.serverPolicies } : {}),
          })
        : { name: "authorize", request: (r, c, n) => n.request(r, c), close: (r, c, n) => n.close(r, c) },
    authorizeClient: () =>
      authorizeClient({
        insecure,
        peerOf: (url) => peers.get(url),
        trustBundle: () => source.current().caPem,
        ...(opts.clientPolicies ? { policies: opts.clientPolicies } : {}),
      }),
    peerOf: (url) => peers.get(url),
    audience: audienceFor,
    async callMetadata(_ctx: CallContext | undefined, url: string, client?: GrpcClient) {
      const t = await sign(await audienceFor(url, client));
      return tokenMetadata(t.token, t.expires, new Metadata());
    },
    learnPeer: (url, conn) => {
      if (!insecure || learnt.has(url)) return;
      const next = conn.path?.pathSegments[conn.path.index + 1]?.token;
      if (!next) return;
      try {
        const sub = decodeToken(next).sub;
        if (sub) learnt.set(url, sub);
      } catch {
        /* not a token we can read: keep sending no audience */
      }
    },
    serverCredentials: () => serverCredentials(insecure ? undefined : source, authorizePeer),
    channelCredentials: (url?: string) =>
      channelCredentials(insecure ? undefined : source, authorizePeer, (raw) => {
        const p = peerCert(raw);
        if (url && p) peers.set(url, p);
      }),
    channelOptions: () => secureChannelOptions(insecure ? undefined : first),
    close: () => source.close(),
  };
}
