// Per-hop tokens (spec §1.10.2, §2.2, §5; upstream sdk pkg/tools/token, spiffejwt): a compact JWS signed
// ES256 with the key of the hop's X.509-SVID, claims `sub` = own SPIFFE ID, `aud` = [the peer's SPIFFE ID, from
// its TLS certificate], `exp`, `iat`. Sent in `nsm-client-token` (+ `-expires`) on every call and stored per
// path segment. There is no `jwk` header: a verifier uses the public key of the signer's TLS certificate.
//
// JWS signing and verification use `jose` (panva/jose): a dependency-free, widely used and actively maintained
// implementation of the JOSE specs, so we do not hand-roll ES256's raw r||s signature encoding or JWS parsing.
import { X509Certificate, type KeyObject } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import {
  SignJWT,
  compactVerify,
  decodeJwt,
  decodeProtectedHeader,
  type ProtectedHeaderParameters,
} from "jose";
import { invalidArgument } from "../core/errors.js";
import { pemBlocks, trySpiffeIdFromCertificate, type Identity } from "./identity.js";

/** NSM_MAX_TOKEN_LIFETIME default (upstream: 10m). */
export const defaultTokenLifetimeMs = 10 * 60_000;

/** Request metadata keys (spec §1.10.2). */
export const tokenKey = "nsm-client-token";
export const tokenExpiresKey = "nsm-client-token-expires";

export type TokenErrorReason = "malformed" | "signature" | "key";

/** A token that cannot be decoded ("malformed"), does not verify ("signature") or has an unusable key. */
export class TokenError extends Error {
  constructor(
    readonly reason: TokenErrorReason,
    message: string,
  ) {
    super(message);
    this.name = "TokenError";
  }
}

/** The claims NSM uses. `aud` is always an array here (a JWT may carry a single string). */
export interface TokenClaims {
  sub?: string;
  aud: string[];
  /** Seconds since the epoch. */
  exp?: number;
  iat?: number;
}

export interface GeneratedToken {
  token: string;
  /** Equals the token's `exp` (whole seconds): what goes into the path segment and `-expires` metadata. */
  expires: Date;
}

/**
 * Signs a token for a call to peers `audience` (their SPIFFE IDs; empty when unknown, then `aud` is left out
 * as upstream does). exp = min(now + lifetime, identity.notAfter, capAt) — `capAt` is the peer certificate's
 * NotAfter when known.
 */
export async function generateToken(
  identity: Identity,
  audience: readonly string[],
  lifetimeMs = defaultTokenLifetimeMs,
  capAt?: Date,
  now = new Date(),
): Promise<GeneratedToken> {
  let expMs = now.getTime() + lifetimeMs;
  if (identity.notAfter) expMs = Math.min(expMs, identity.notAfter.getTime());
  if (capAt) expMs = Math.min(expMs, capAt.getTime());
  const exp = Math.floor(expMs / 1000);
  const x5c = x5cOf(identity);
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: "ES256", typ: "JWT", ...(x5c ? { x5c } : {}) })
    .setSubject(identity.spiffeId)
    .setIssuedAt(Math.floor(now.getTime() / 1000))
    .setExpirationTime(exp);
  if (audience.length > 0) jwt.setAudience([...audience]);
  const token = await jwt.sign(identity.privateKey);
  return { token, expires: new Date(exp * 1000) };
}

/** The protected header of a token, unverified. Throws TokenError("malformed"). */
export function decodeTokenHeader(token: string): ProtectedHeaderParameters {
  if (typeof token !== "string" || token.split(".").length !== 3)
    throw new TokenError("malformed", "token is not a JWT: want three dot-separated base64url parts");
  try {
    return decodeProtectedHeader(token);
  } catch (e) {
    throw new TokenError("malformed", `token header does not decode: ${(e as Error).message}`);
  }
}

/**
 * A small map that forgets its oldest entries beyond `max`. Tokens repeat a lot (the same token is decoded
 * by several policies and re-verified on every refresh until it is re-minted), and decoding or importing a
 * key each time was the largest CPU cost of a hop.
 */
class Bounded<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(k: K, v: V): this {
    if (this.size >= this.max && !this.has(k)) this.delete(this.keys().next().value as K);
    return super.set(k, v);
  }
}

const claimsCache = new Bounded<string, TokenClaims>(8192);
/** token → the key object it verified with (same object ⇒ same check, skip it). */
const verifiedWith = new Bounded<string, KeyObject>(8192);

/**
 * The claims of a token, WITHOUT verifying it. Throws TokenError("malformed") on anything that is not a JWT.
 * The returned object is shared: do not modify it.
 */
export function decodeToken(token: string): TokenClaims {
  const hit = claimsCache.get(token);
  if (hit) return hit;
  const claims = decodeTokenUncached(token);
  claimsCache.set(token, claims);
  return claims;
}

function decodeTokenUncached(token: string): TokenClaims {
  decodeTokenHeader(token);
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(token);
  } catch (e) {
    throw new TokenError("malformed", `token payload does not decode: ${(e as Error).message}`);
  }
  const { sub, aud, exp, iat } = payload;
  if (sub !== undefined && typeof sub !== "string")
    throw new TokenError("malformed", "token `sub` is not a string");
  const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  if (exp !== undefined && !isNum(exp)) throw new TokenError("malformed", "token `exp` is not a number");
  if (iat !== undefined && !isNum(iat)) throw new TokenError("malformed", "token `iat` is not a number");
  let audience: string[];
  if (aud === undefined) audience = [];
  else if (typeof aud === "string") audience = [aud];
  else {
    const list: unknown[] = Array.isArray(aud) ? aud : [aud];
    audience = list.filter((a): a is string => typeof a === "string");
    if (!Array.isArray(aud) || audience.length !== list.length)
      throw new TokenError("malformed", "token `aud` is neither a string nor an array of strings");
  }
  const claims: TokenClaims = { aud: audience };
  if (sub !== undefined) claims.sub = sub;
  if (exp !== undefined) claims.exp = exp;
  if (iat !== undefined) claims.iat = iat;
  return claims;
}

/**
 * Verifies the ES256 signature (only the signature: `exp` is the tokensExpired policy's business) and returns
 * the claims. `key` is the signer's public key: that of its TLS certificate.
 */
export async function verifyToken(token: string, k: KeyObject): Promise<TokenClaims> {
  const claims = decodeToken(token);
  try {
    if (verifiedWith.get(token) === k) return claims;
    await compactVerify(token, k, { algorithms: ["ES256"] });
    verifiedWith.set(token, k);
  } catch (e) {
    if (e instanceof TokenError) throw e;
    throw new TokenError("signature", `token signature does not verify: ${(e as Error).message}`);
  }
  return claims;
}

/** Go's time.RFC3339Nano output: fraction with trailing zeros dropped (none at all when zero), UTC "Z". */
export function formatRfc3339Nano(d: Date): string {
  // Every call carries a cached token, so the same expiry is formatted again and again: remember the last.
  const ms = d.getTime();
  if (ms === lastFormatted.ms) return lastFormatted.text;
  const text = d.toISOString().replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac ? `.${frac}Z` : "Z"));
  lastFormatted = { ms, text };
  return text;
}
let lastFormatted = { ms: NaN, text: "" };

const rfc3339Re = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|([+-])(\d\d):(\d\d))$/;

/** Parses RFC 3339 with any number of fraction digits (Go writes up to 9) and any offset; undefined if not. */
export function parseRfc3339(text: string): Date | undefined {
  // Callers present the same expiry on call after call: remember the last text (a fresh Date each time).
  if (text === lastParsed.text) return lastParsed.ms === undefined ? undefined : new Date(lastParsed.ms);
  const d = parseRfc3339Uncached(text);
  lastParsed = { text, ms: d?.getTime() };
  return d;
}
let lastParsed: { text: string | undefined; ms: number | undefined } = { text: undefined, ms: undefined };

function parseRfc3339Uncached(text: string): Date | undefined {
  const m = rfc3339Re.exec(text);
  if (!m) return undefined;
  const n = (i: number): number => Number(m[i] ?? "0");
  let ms = Date.UTC(n(1), n(2) - 1, n(3), n(4), n(5), n(6));
  if (m[7]) ms += Math.floor(Number(`0${m[7]}`) * 1000);
  if (m[9]) ms -= (m[9] === "-" ? -1 : 1) * (n(10) * 60 + n(11)) * 60_000;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) || n(2) > 12 || n(3) > 31 || n(4) > 23 || n(5) > 59 || n(6) > 60
    ? undefined
    : d;
}

/** Sets `nsm-client-token` and `nsm-client-token-expires` (spec §1.10.2) on `md` (a new Metadata by default). */
export function tokenMetadata(token: string, expires: Date, md = new Metadata()): Metadata {
  md.set(tokenKey, token);
  md.set(tokenExpiresKey, formatRfc3339Nano(expires));
  return md;
}

/**
 * The token a caller presented, or undefined when it sent none. A missing or unparseable `-expires` falls back
 * to the token's `exp`; throws INVALID_ARGUMENT when neither gives a time.
 */
export function tokenFromMetadata(md: Metadata): { token: string; expires: Date } | undefined {
  const token = md.get(tokenKey)[0];
  if (typeof token !== "string" || token.length === 0) return undefined;
  const raw = md.get(tokenExpiresKey)[0];
  const expires = typeof raw === "string" ? parseRfc3339(raw) : undefined;
  if (expires) return { token, expires };
  let exp: number | undefined;
  try {
    exp = decodeToken(token).exp;
  } catch {
    exp = undefined;
  }
  if (exp === undefined)
    throw invalidArgument(
      `metadata ${tokenExpiresKey}`,
      `${raw === undefined ? "missing" : `"${String(raw)}" is not an RFC 3339 time`} and the token has no exp`,
    );
  return { token, expires: new Date(exp * 1000) };
}

// x5c: the signer's certificate chain (DER, base64), so a peer whose TLS connection predates a rotation of our
// SVID can still verify a token signed with the new key (verifyPeerToken). It costs ~1 KB per token.
const x5cs = new WeakMap<Identity, string[]>();
function x5cOf(identity: Identity): string[] | undefined {
  if (!identity.certChainPem) return undefined;
  let x5c = x5cs.get(identity);
  if (!x5c) {
    x5c = pemBlocks(identity.certChainPem).map((b) => new X509Certificate(b).raw.toString("base64"));
    x5cs.set(identity, x5c);
  }
  return x5c;
}

/** x5c leaf (base64) + bundle → the leaf's key and validity once its chain checked out; rotations are rare. */
const x5cLeaves = new Bounded<string, { key: KeyObject; id: string | undefined; from: Date; to: Date }>(256);

/** The peer a token must come from: its TLS certificate's key and SPIFFE ID. */
export interface TokenPeer {
  publicKey: KeyObject;
  spiffeId?: string | undefined;
}

/**
 * Verifies that `peer` signed `token`: with the key of its TLS certificate, or — when the peer's SVID rotated
 * after the TLS handshake — with the key of the certificate in the token's `x5c` header, which must carry the
 * same SPIFFE ID, be valid now and chain to `bundlePem` (our trust bundle).
 */
export async function verifyPeerToken(
  token: string,
  peer: TokenPeer,
  bundlePem: string | undefined,
  now = new Date(),
): Promise<TokenClaims> {
  try {
    return await verifyToken(token, peer.publicKey);
  } catch (first) {
    if (!(first instanceof TokenError) || first.reason !== "signature" || !bundlePem || !peer.spiffeId)
      throw first;
    const x5c = decodeTokenHeader(token).x5c;
    if (!Array.isArray(x5c) || x5c.length === 0) throw first;
    const cacheKey = `${x5c.join(".")}|${bundlePem}`;
    let leaf = x5cLeaves.get(cacheKey);
    if (!leaf) {
      let chain: X509Certificate[];
      try {
        chain = x5c.map((c) => new X509Certificate(Buffer.from(c, "base64")));
      } catch {
        throw first;
      }
      const cert = chain[0]!;
      const roots = pemBlocks(bundlePem).map((b) => new X509Certificate(b));
      const signedBy = (c: X509Certificate, by: X509Certificate[]): X509Certificate | undefined =>
        by.find((b) => c.checkIssued(b) && c.verify(b.publicKey));
      let cur = cert;
      for (let hops = 0; !signedBy(cur, roots); hops++) {
        const next = signedBy(cur, chain.slice(1));
        if (!next || hops > chain.length) throw first;
        cur = next;
      }
      leaf = {
        key: cert.publicKey,
        id: trySpiffeIdFromCertificate(cert),
        from: new Date(cert.validFrom),
        to: new Date(cert.validTo),
      };
      x5cLeaves.set(cacheKey, leaf);
    }
    if (leaf.id !== peer.spiffeId) throw first;
    if (now < leaf.from || now > leaf.to) throw first;
    return verifyToken(token, leaf.key);
  }
}
