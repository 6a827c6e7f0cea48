// Who is calling: the SPIFFE ID of the caller's TLS certificate under mTLS (proven by the handshake), or, on
// an insecure link, the `sub` its token claims (unproven: insecure mode authenticates nobody). Per-identity
// limits, pinning, ownership and monitor filtering all key on this.
import { X509Certificate, type KeyObject } from "node:crypto";
import type { CallContext } from "../core/context.js";
import { decodeToken, tokenKey } from "./token.js";
import { trySpiffeIdFromCertificate } from "./identity.js";

export interface PeerCert {
  /** undefined when the certificate carries no SPIFFE ID (refused by authorization). */
  spiffeId: string | undefined;
  publicKey: KeyObject;
  notAfter: Date;
}

// DER (as base64) → parsed peer; a handful of peers call a hop, each on many calls.
const peers = new Map<string, PeerCert>();
const maxPeers = 1024;

/** The caller's certificate, parsed once per distinct certificate; undefined on an insecure link. */
export function peerCert(der: Buffer | undefined): PeerCert | undefined {
  if (!der) return undefined;
  const key = der.toString("base64");
  let p = peers.get(key);
  if (!p) {
    const cert = new X509Certificate(der);
    p = {
      spiffeId: trySpiffeIdFromCertificate(cert),
      publicKey: cert.publicKey,
      notAfter: new Date(cert.validTo),
    };
    if (peers.size >= maxPeers) peers.delete(peers.keys().next().value as string);
    peers.set(key, p);
  }
  return p;
}

// Several elements of one call ask (updatetoken, authorize, monitor, registry limits): work it out once.
const perCall = new WeakMap<CallContext, { id: string | undefined }>();

/** The caller's identity (see the top of this file); undefined when it has neither certificate nor token. */
export function callerId(ctx: CallContext): string | undefined {
  let hit = perCall.get(ctx);
  if (!hit) perCall.set(ctx, (hit = { id: callerIdOf(ctx) }));
  return hit.id;
}

function callerIdOf(ctx: CallContext): string | undefined {
  if (ctx.peerCertificate) return peerCert(ctx.peerCertificate)?.spiffeId;
  const token = ctx.metadata.get(tokenKey)[0];
  if (typeof token !== "string" || token === "") return undefined;
  try {
    return decodeToken(token).sub;
  } catch {
    return undefined;
  }
}
