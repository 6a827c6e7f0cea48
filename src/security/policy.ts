// The default authorization policies of spec §5 (upstream: rego files under sdk/pkg/tools/opa/policies), as
// plain functions over a connection Path. Each returns normally or throws PERMISSION_DENIED with upstream's
// "no sufficient privileges" followed by the policy name, the failing segment and the reason.
//
// Which segments: a server checks the left side of the path, segments 0..index, where index is its own
// segment (updatepath has run) and index−1 is its caller's, whose token updatetoken replaced with the token
// the caller presented. A client checks the whole path of the response. The common checks take a `scope`.
import type { KeyObject } from "node:crypto";
import type { PathSegment } from "../api/connection.js";
import { permissionDenied, type StatusError } from "../core/errors.js";
import { TokenError, decodeToken, embeddedKey, verifyToken, type TokenClaims } from "./token.js";

/** The parts of a Path the policies read; a connection Path fits. */
export interface PolicyPath {
  index: number;
  pathSegments: readonly Pick<PathSegment, "name" | "token">[];
}

/** "left": segments 0..index (server side); "all": every segment (client side, on a response). */
export type Scope = "left" | "all";

/** How the caller's (server side) or the server's (client side) token signature is checked. */
export type SignerKey = KeyObject | "embedded";

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
 * tokens_expired: the tokens in scope have `exp` after `now`. On the server side ("left") that is the caller's
 * token (index−1, the one it presented on this call) and this hop's own: older segments may legitimately
 * have expired, e.g. on a Close a hop sends after its client vanished. A client ("all") checks every segment.
 */
export function tokensExpired(path: PolicyPath, now = new Date(), scope: Scope = "left"): void {
  const segs = scoped(path, scope);
  const nowSec = now.getTime() / 1000;
  for (let i = scope === "left" ? Math.max(0, path.index - 1) : 0; i < segs.length; i++) {
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
 * tokens_chained: for consecutive segments i, i+1 in scope, token[i].aud contains token[i+1].sub (when
 * token[i] names an audience at all).
 */
export function tokensChained(path: PolicyPath, scope: Scope = "left"): void {
  const segs = scoped(path, scope);
  for (let i = 0; i + 1 < segs.length; i++) {
    const a = claimsAt(path, i, "tokens_chained");
    const b = claimsAt(path, i + 1, "tokens_chained");
    // A token whose issuer did not yet know its peer carries no aud (a client's first call to a peer:
    // grpc-js cannot show the peer certificate before the call); such a link is not chain-checked.
    if (b.sub === undefined || (a.aud.length > 0 && !a.aud.includes(b.sub)))
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
  key: SignerKey,
  policy: string,
  signer: string,
): Promise<void> {
  const token = path.pathSegments[i]?.token ?? "";
  if (token === "") throw denied(policy, `${where(path, i)} has no token`);
  try {
    await verifyToken(token, key);
  } catch (e) {
    const why = e instanceof TokenError ? e.message : String(e);
    throw denied(policy, `${where(path, i)} token is not signed by ${signer}: ${why}`);
  }
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  return a.equals(b);
}

/**
 * prev_token_signed: the token at index−1 (the caller's) verifies against `callerKey`, the public key of the
 * caller's TLS certificate. In insecure mode (`"embedded"`) it must verify with its own `jwk` header AND that
 * key must be the one in the token the caller presented in `nsm-client-token` (`presentedToken`).
 */
export async function prevTokenSigned(
  path: PolicyPath,
  callerKey: SignerKey,
  presentedToken?: string,
): Promise<void> {
  const policy = "prev_token_signed";
  const i = path.index - 1;
  if (i < 0 || i >= path.pathSegments.length)
    throw denied(
      policy,
      `path index ${path.index} has no previous segment (path has ${path.pathSegments.length})`,
    );
  if (callerKey !== "embedded") {
    await checkSigned(path, i, callerKey, policy, "the caller's certificate key");
    return;
  }
  if (presentedToken === undefined || presentedToken === "")
    throw denied(policy, "the caller presented no nsm-client-token to compare keys with");
  await checkSigned(path, i, "embedded", policy, "its embedded jwk key");
  let presentedKey: KeyObject | undefined;
  let segmentKey: KeyObject | undefined;
  try {
    presentedKey = embeddedKey(presentedToken);
    segmentKey = embeddedKey(path.pathSegments[i]?.token ?? "");
  } catch (e) {
    throw denied(
      policy,
      `cannot read the jwk of ${where(path, i)} or the presented token: ${(e as Error).message}`,
    );
  }
  if (!presentedKey) throw denied(policy, "the presented nsm-client-token has no jwk header");
  if (!segmentKey || !sameKey(presentedKey, segmentKey))
    throw denied(
      policy,
      `${where(path, i)} token is signed by another key than the token the caller presented`,
    );
}

/** next_token_signed (client side, on a response): the token at index+1 verifies against the server's key. */
export async function nextTokenSigned(path: PolicyPath, serverKey: SignerKey): Promise<void> {
  const policy = "next_token_signed";
  const i = path.index + 1;
  if (i >= path.pathSegments.length)
    throw denied(policy, `the response path has no segment after index ${path.index}`);
  await checkSigned(
    path,
    i,
    serverKey,
    policy,
    serverKey === "embedded" ? "its embedded jwk key" : "the server's certificate key",
  );
}

export interface ServerPolicyInput {
  /** The caller's certificate public key under mTLS; "embedded" in insecure mode. */
  callerKey: SignerKey;
  /** The token from the request's `nsm-client-token` metadata. */
  presentedToken?: string;
  now?: Date;
}

/** Default server policy set (common + server) over segments 0..index, cheapest checks first. */
export async function serverPolicies(path: PolicyPath, input: ServerPolicyInput): Promise<void> {
  tokensValid(path, "left");
  tokensExpired(path, input.now, "left");
  tokensChained(path, "left");
  await prevTokenSigned(path, input.callerKey, input.presentedToken);
}

export interface ClientPolicyInput {
  /** The server's certificate public key under mTLS; "embedded" in insecure mode. */
  serverKey: SignerKey;
  now?: Date;
}

/** Default client policy set (common + client) over the whole response path. */
export async function clientPolicies(path: PolicyPath, input: ClientPolicyInput): Promise<void> {
  tokensValid(path, "all");
  tokensExpired(path, input.now, "all");
  tokensChained(path, "all");
  await nextTokenSigned(path, input.serverKey);
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
