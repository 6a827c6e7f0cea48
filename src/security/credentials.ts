// gRPC transport credentials from an IdentitySource (spec §1.10.1; upstream: go-spiffe
// tlsconfig.MTLSClientConfig / MTLSServerConfig): mTLS with X.509-SVIDs whose certificate and bundle follow the
// source's rotations (new handshakes use the new SVID, established connections carry on). A peer is accepted
// when its certificate chains to the bundle (TLS does that), carries a SPIFFE ID, and the ID passes the
// authorizer (by default: the same trust domain). Host names play no part: SVIDs name workloads, not hosts.
// Without a certificate (explicit insecure mode) the transport is plaintext.
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { peerCert } from "./caller.js";
import { hasCertificate, type Identity } from "./identity.js";
import type { IdentitySource } from "./source.js";

/** Decides whether a peer's SPIFFE ID may talk to us (upstream: a tlsconfig.Authorizer). */
export type PeerAuthorizer = (spiffeId: string) => boolean;

/** The trust domain of a SPIFFE ID ("spiffe://td/path" → "td"). */
export function trustDomainOf(spiffeId: string): string {
  const rest = spiffeId.slice("spiffe://".length);
  const slash = rest.indexOf("/");
  return slash < 0 ? rest : rest.slice(0, slash);
}

/** Accepts IDs of the listed trust domains (upstream: tlsconfig.AuthorizeMemberOf, for each). */
export function trustDomainAuthorizer(trustDomains: readonly string[]): PeerAuthorizer {
  const allowed = new Set(trustDomains);
  return (id) => allowed.has(trustDomainOf(id));
}

/** Why a peer certificate is refused, or undefined when it is accepted. */
export function refusePeer(raw: Buffer | undefined, authorize: PeerAuthorizer): string | undefined {
  if (!raw) return "the peer presented no certificate";
  const id = peerCert(raw)?.spiffeId;
  if (id === undefined) return "the peer certificate has no spiffe:// URI SAN: it is not an X.509-SVID";
  if (!authorize(id)) return `the peer ${id} is not authorized (trust domain ${trustDomainOf(id)})`;
  return undefined;
}

/**
 * Refuses every call from a peer whose SVID the authorizer rejects, with UNAUTHENTICATED, before any
 * handler runs (health included).
 */
function peerInterceptor(authorize: PeerAuthorizer): grpc.ServerInterceptor {
  // Verdicts per peer certificate, for this authorizer only: a hop sees the same few certificates on every
  // call, and another server of the process may authorize other trust domains.
  const verdicts = new Map<string, string | null>();
  const cachedRefusal = (raw: Buffer | undefined): string | undefined => {
    if (!raw) return refusePeer(raw, authorize);
    const key = raw.toString("base64");
    const hit = verdicts.get(key);
    if (hit !== undefined) return hit ?? undefined;
    const why = refusePeer(raw, authorize);
    if (verdicts.size >= 1024) verdicts.clear();
    verdicts.set(key, why ?? null);
    return why;
  };
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        const why = cachedRefusal(call.getAuthContext()?.sslPeerCertificate?.raw);
        next({
          onReceiveMetadata: (md, mdNext) => {
            if (why === undefined) mdNext(md);
            else call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: `mTLS: ${why}` });
          },
        });
      },
    });
}

/** Server credentials: mTLS requiring an authorized client SVID; insecure without a certificate. */
export function serverCredentials(
  source: IdentitySource | undefined,
  authorize: PeerAuthorizer,
): grpc.ServerCredentials {
  if (!source || !hasCertificate(source.current())) return grpc.ServerCredentials.createInsecure();
  return grpc.experimental.createServerCredentialsWithInterceptors(
    grpc.experimental.createCertificateProviderServerCredentials(source, source, true),
    [peerInterceptor(authorize)],
  );
}

/**
 * Channel credentials: mTLS with our SVID and bundle. `onPeer` sees the server's certificate at every
 * handshake, before any call is sent: it gives the first call's token its audience.
 */
export function channelCredentials(
  source: IdentitySource | undefined,
  authorize: PeerAuthorizer,
  onPeer?: (raw: Buffer) => void,
): grpc.ChannelCredentials {
  if (!source || !hasCertificate(source.current())) return grpc.credentials.createInsecure();
  return grpc.experimental.createCertificateProviderChannelCredentials(source, source, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const why = refusePeer(cert.raw, authorize);
      if (why !== undefined) return new Error(why);
      onPeer?.(cert.raw);
      return undefined;
    },
  });
}

/**
 * Channel options to use with `channelCredentials`: TLS sends the target host as SNI, and Node warns when that
 * is an IP address (RFC 6066 forbids it). SVIDs carry no host names, so a fixed SNI name is as good as any.
 */
export function secureChannelOptions(identity?: Identity): grpc.ChannelOptions {
  return hasCertificate(identity) ? { "grpc.ssl_target_name_override": "nsm" } : {};
}
