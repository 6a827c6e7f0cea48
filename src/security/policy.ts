// The authorization policies of spec §5 (upstream: the rego files under sdk/pkg/tools/opa/policies), as
// plain functions over a connection Path, and the Policy lists the authorize elements run (pluggable). Each returns normally or throws PERMISSION_DENIED with upstream's
// "no sufficient privileges" followed by the policy name, the failing segment and the reason.
//
// Which segments: a server checks the left side of the path, segments 0..index, where index is its own
// segment (updatepath has run) and index−1 is its caller's, whose token updatetoken replaced with the token
// the caller presented. A client checks the whole path of the response. The common checks take a `scope`.
import type { KeyObject } from "node:crypto";
import type { PathSegment } from "../api/connection.js";
import { permissionDenied, type StatusError } from "../core/errors.js";
import { TokenError, decodeToken, verifyPeerToken, type TokenClaims } from "./token.js";

/** The parts of a Path the policies read; a connection Path fits. */
export interface PolicyPath {
  index: number;
  pathSegments: readonly Pick<PathSegment, "name" | "token">[];
}

/** "left": segments 0..index (server side); "all": every segment (client side, on a response). */
export type Scope = "left" | "all";

function denied(policy: string, why: string): StatusError {
  return permissionDenied(`no sufficient privileges: ${policy}: ${why}`);
}

function where(path: PolicyPath, i: number): string {
  const name = path.pathSegments[i]?.name;
  return name ? `segment ${i} (${name})` : `segment ${i}`;
}

function scoped(path: PolicyPath, scope: Scope): readonly Pick<PathSegment, "name" | "token">[] {
  return scope === "all" ? path.pathSegments : path.pathSegments.slice(0, path.index + 1);
}

function claimsAt(path: PolicyPath, i: number, policy: string): TokenClaims {
  const token = path.pathSegments[i]?.token ?? "";
  if (token === "") throw denied(policy, `${where(path, i)} has no token`);
  try {
    return decodeToken(token);
  } catch (e) {
    throw denied(policy, `${where(path, i)} token is not a JWT: ${(e as Error).message}`);
  }
}

/** tokens_valid: every segment in scope has a token that decodes as a JWT. An empty path passes. */
export function tokensValid(path: PolicyPath, scope: Scope = "left"): void {
  const segs = scoped(path, scope);
  for (let i = 0; i < segs.length; i++) claimsAt(path, i, "tokens_valid");
}

/**
 * tokens_expired (upstream common/tokens_expired.rego): every token in scope has `exp` after `now`. With
 * `callerOnly` (a Close) only the caller's token (index−1) and this hop's own are checked: a hop may close
 * downstream after its client vanished, with the older segments' tokens expired; upstream refuses that Close
 * and leaves the next hop to its own timeout, we let the hop that proves itself now clean up at once.
 */
export function tokensExpired(
  path: PolicyPath,
  now = new Date(),
  scope: Scope = "left",
  callerOnly = false,
): void {
  const segs = scoped(path, scope);
  const nowSec = now.getTime() / 1000;
  for (let i = callerOnly ? Math.max(0, path.index - 1) : 0; i < segs.length; i++) {
    const { exp } = claimsAt(path, i, "tokens_expired");
    if (exp === undefined) throw denied("tokens_expired", `${where(path, i)} token has no exp claim`);
    if (!(nowSec < exp))
      throw denied(
        "tokens_expired",
        `${where(path, i)} token expired at ${new Date(exp * 1000).toISOString()} (now ${now.toISOString()})`,
      );
  }
}

/**
 * tokens_chained (upstream common/tokens_chained.rego): for consecutive segments i, i+1 in scope,
 * token[i].aud contains token[i+1].sub. A token without `aud` breaks the chain, as upstream. Only an explicitly
 * insecure hop (`allowMissingAud`: no TLS handshake names the peer before the first call) lets a missing `aud`
 * pass; a wrong one never passes.
 */
export function tokensChained(path: PolicyPath, scope: Scope = "left", allowMissingAud = false): void {
  const segs = scoped(path, scope);
  for (let i = 0; i + 1 < segs.length; i++) {
    const a = claimsAt(path, i, "tokens_chained");
    const b = claimsAt(path, i + 1, "tokens_chained");
    if (allowMissingAud && a.aud.length === 0 && b.sub !== undefined) continue;
    if (b.sub === undefined || !a.aud.includes(b.sub))
      throw denied(
        "tokens_chained",
        `${where(path, i)} token aud [${a.aud.join(", ")}] does not contain the sub ` +
          `"${b.sub ?? ""}" of ${where(path, i + 1)}`,
      );
  }
}

async function checkSigned(
  path: PolicyPath,
  i: number,
  key: KeyObject,
  policy: string,
  signer: string,
  peerId?: string,
  bundlePem?: string,
): Promise<void> {
  const token = path.pathSegments[i]?.token ?? "";
  if (token === "") throw denied(policy, `${where(path, i)} has no token`);
  try {
    await verifyPeerToken(token, { publicKey: key, spiffeId: peerId }, bundlePem);
  } catch (e) {
    const why = e instanceof TokenError ? e.message : String(e);
    throw denied(policy, `${where(path, i)} token is not signed by ${signer}: ${why}`);
  }
}

/**
 * prev_token_signed (upstream server/prev_token_signed.rego): the token at index−1 (the caller's) verifies
 * against `callerKey`, the public key of the caller's TLS certificate, and its `sub` is the caller's
 * certificate identity `callerId`.
 */
export async function prevTokenSigned(
  path: PolicyPath,
  callerKey: KeyObject,
  callerId: string,
  bundlePem?: string,
): Promise<void> {
  const policy = "prev_token_signed";
  const i = path.index - 1;
  if (i < 0 || i >= path.pathSegments.length)
    throw denied(
      policy,
      `path index ${path.index} has no previous segment (path has ${path.pathSegments.length})`,
    );
  await checkSigned(path, i, callerKey, policy, "the caller's certificate key", callerId, bundlePem);
  const sub = claimsAt(path, i, policy).sub;
  if (sub !== callerId)
    throw denied(
      policy,
      `${where(path, i)} token sub "${sub ?? ""}" is not the caller's identity "${callerId}"`,
    );
}

/**
 * next_token_signed (upstream client/next_token_signed.rego, on a response): the token at index+1 verifies
 * against the server's certificate key.
 */
export async function nextTokenSigned(
  path: PolicyPath,
  serverKey: KeyObject,
  serverId?: string,
  bundlePem?: string,
): Promise<void> {
  const policy = "next_token_signed";
  const i = path.index + 1;
  if (i >= path.pathSegments.length)
    throw denied(policy, `the response path has no segment after index ${path.index}`);
  await checkSigned(path, i, serverKey, policy, "the server's certificate key", serverId, bundlePem);
}

/** What a policy sees. Server side: the caller; client side: the server (on a response). */
export interface PolicyInput {
  path: PolicyPath;
  /** The peer's SPIFFE ID: from its certificate, or (insecure) from its token's claim. */
  peerId?: string;
  /** The peer's certificate public key; undefined on an insecure link. */
  peerKey?: KeyObject;
  /** The link is insecure (explicit opt-in): signatures cannot be checked and a missing aud is tolerated. */
  insecure: boolean;
  now: Date;
  /** The call is a Close (see tokensExpired). */
  close?: boolean;
  /** Our trust bundle (PEM): tokens signed after the peer's SVID rotated verify through their x5c. */
  trustBundlePem?: string;
}

/** A policy in the sense of upstream's `authorize.WithPolicies`: passes, or throws PERMISSION_DENIED. */
export interface Policy {
  name: string;
  check(input: PolicyInput): void | Promise<void>;
}

function needKey(input: PolicyInput, policy: string): KeyObject | undefined {
  if (input.peerKey) return input.peerKey;
  if (input.insecure) return undefined; // nothing to verify with: insecure mode authenticates nobody
  throw denied(policy, "the peer presented no TLS certificate");
}

/** The server policies (upstream authorize.NewServer defaults), cheapest first. */
export const serverPolicyList: readonly Policy[] = [
  { name: "tokens_valid", check: (i) => tokensValid(i.path, "left") },
  { name: "tokens_expired", check: (i) => tokensExpired(i.path, i.now, "left", i.close === true) },
  { name: "tokens_chained", check: (i) => tokensChained(i.path, "left", i.insecure) },
  {
    name: "prev_token_signed",
    check: async (i) => {
      const key = needKey(i, "prev_token_signed");
      if (key) await prevTokenSigned(i.path, key, i.peerId ?? "", i.trustBundlePem);
    },
  },
];

/** The client policies (upstream authorize.NewClient defaults), over the whole response path. */
export const clientPolicyList: readonly Policy[] = [
  { name: "tokens_valid", check: (i) => tokensValid(i.path, "all") },
  { name: "tokens_expired", check: (i) => tokensExpired(i.path, i.now, "all") },
  { name: "tokens_chained", check: (i) => tokensChained(i.path, "all", i.insecure) },
  {
    name: "next_token_signed",
    check: async (i) => {
      const key = needKey(i, "next_token_signed");
      if (key) await nextTokenSigned(i.path, key, i.peerId, i.trustBundlePem);
    },
  },
];

/** Runs `policies` in order; the first failure throws. */
export async function checkPolicies(policies: readonly Policy[], input: PolicyInput): Promise<void> {
  for (const p of policies) await p.check(input);
}

/**
 * registry/client_allowed: a name may be (re-)registered or unregistered by anyone while unknown, afterwards
 * only by its original registrant: `existingPathIds[0]` (the first path id recorded for the resource) must be
 * `requesterId` (the `sub` of the request's path segment 0 token).
 */
export function registryClientAllowed(
  resourceName: string,
  requesterId: string,
  existingPathIds?: readonly string[],
): void {
  if (!existingPathIds || existingPathIds.length === 0) return;
  if (existingPathIds[0] !== requesterId)
    throw denied(
      "registry_client_allowed",
      `"${resourceName}" was registered by "${existingPathIds[0]}", not by "${requesterId}"; only the ` +
        `original registrant may update or remove a name`,
    );
}
