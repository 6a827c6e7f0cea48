// gRPC transport credentials from an Identity (spec §1.10.1): mTLS with X.509-SVIDs when the identity has
// certificates, insecure otherwise. Verification follows go-spiffe's tlsconfig.MTLS{Client,Server}Config with
// AuthorizeAny: a peer is accepted if its certificate chains to our trust bundle and carries a SPIFFE ID; host
// names play no part (SVIDs name workloads, not hosts). Authorization is left to the token policies.
import { X509Certificate, type KeyObject } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { hasCertificate, trySpiffeIdFromCertificate, type Identity } from "./identity.js";

/** Server credentials: mTLS requiring a client certificate chained to the CA, or insecure without certs. */
export function serverCredentials(identity?: Identity): grpc.ServerCredentials {
  if (!hasCertificate(identity)) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    Buffer.from(identity.caPem),
    [{ private_key: Buffer.from(identity.keyPem), cert_chain: Buffer.from(identity.certChainPem) }],
    true,
  );
}

/**
 * Replaces TLS host-name checking: the server certificate must carry a SPIFFE ID (chain verification against
 * the CA is done by TLS itself before this runs).
 */
function checkSpiffeServer(_host: string, cert: PeerCertificate): Error | undefined {
  if (!cert.raw) return new Error("server presented no certificate");
  return trySpiffeIdFromCertificate(cert.raw) === undefined
    ? new Error("server certificate has no spiffe:// URI SAN: it is not an X.509-SVID")
    : undefined;
}

/** Channel credentials: mTLS with our SVID and the trust bundle, or insecure without certs. */
export function channelCredentials(identity?: Identity): grpc.ChannelCredentials {
  if (!hasCertificate(identity)) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    Buffer.from(identity.caPem),
    Buffer.from(identity.keyPem),
    Buffer.from(identity.certChainPem),
    { checkServerIdentity: checkSpiffeServer },
  );
}

/**
 * Channel options to use with `channelCredentials`: TLS sends the target host as SNI, and Node warns when that
 * is an IP address (RFC 6066 forbids it). SVIDs carry no host names, so a fixed SNI name is as good as any.
 */
export function secureChannelOptions(identity?: Identity): grpc.ChannelOptions {
  return hasCertificate(identity) ? { "grpc.ssl_target_name_override": "nsm" } : {};
}

export interface PeerIdentity {
  certificate: X509Certificate;
  publicKey: KeyObject;
  /** The peer's SPIFFE ID, undefined when its certificate carries none. */
  spiffeId?: string;
  notAfter: Date;
}

/** Anything with grpc-js's getAuthContext(): server calls (handlers) and client calls alike. */
export interface HasAuthContext {
  // grpc-js's AuthContext is not exported from its index; this is the part we read.
  getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } | null;
}

/**
 * The peer's certificate (the leaf of its verified chain) from a grpc-js call, or undefined on an insecure
 * connection. Server side: the handler's `call`; client side: the object returned by makeUnaryRequest etc.
 */
export function peerCertificate(call: HasAuthContext): PeerIdentity | undefined {
  const raw = call.getAuthContext?.()?.sslPeerCertificate?.raw;
  if (!raw) return undefined;
  const certificate = new X509Certificate(raw);
  const spiffeId = trySpiffeIdFromCertificate(certificate);
  const peer: PeerIdentity = {
    certificate,
    publicKey: certificate.publicKey,
    notAfter: new Date(certificate.validTo),
  };
  if (spiffeId !== undefined) peer.spiffeId = spiffeId;
  return peer;
}
