// Registry-side tokens and the registry policy (spec §4.2 path_ids, §5; upstream registry updatepath,
// updatetoken and authorize with registry/client_allowed.rego): the caller proves itself with a token signed
// by its certificate key; each hop of a registration path signs its segment; the record's path_ids are the
// identities along the path ([caller, registry] for a direct call); once a name is registered only its
// original registrant (path_ids[0]) may update or remove it.
import { randomUUID } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import type { CallContext } from "../core/context.js";
import { permissionDenied, unauthenticated } from "../core/errors.js";
import type { RegistryServer } from "../core/registrychain.js";
import { msToTimestamp } from "../core/time.js";
import { callerId, peerCert } from "../security/caller.js";
import { registryClientAllowed } from "../security/policy.js";
import {
  TokenError,
  decodeToken,
  tokenFromMetadata,
  tokenMetadata,
  verifyPeerToken,
  type GeneratedToken,
} from "../security/token.js";
import { formatPath, pathFromContext, type RegistryPath } from "./updatepath.js";

export type Signer = (audience: string[]) => Promise<GeneratedToken>;

interface WithPathIds {
  name: string;
  pathIds: string[];
}

function subOf(token: string | undefined): string {
  if (!token) return "";
  try {
    return decodeToken(token).sub ?? "";
  } catch {
    return "";
  }
}

/**
 * The caller's identity, proven: under mTLS its token must be signed by its certificate key, name the
 * certificate's SPIFFE ID as `sub`, and be unexpired. Insecure (explicit): the token's claim.
 */
async function provenCaller(
  ctx: CallContext,
  insecure: boolean,
  trustBundle?: () => string | undefined,
): Promise<{ id: string; token: string } | undefined> {
  const presented = tokenFromMetadata(ctx.metadata);
  const cert = peerCert(ctx.peerCertificate);
  if (!cert && !insecure)
    throw unauthenticated("no sufficient privileges: the caller presented no TLS certificate");
  // Insecure mode: a caller without a token is anonymous, and gets no claim to the name.
  if (!presented && insecure) return undefined;
  if (!presented) throw unauthenticated("no sufficient privileges: the call carries no nsm-client-token");
  const claimed = subOf(presented.token);
  if (cert) {
    try {
      await verifyPeerToken(presented.token, cert, trustBundle?.());
    } catch (e) {
      throw unauthenticated(
        `no sufficient privileges: nsm-client-token is not signed by the caller's certificate key: ${
          e instanceof TokenError ? e.message : String(e)
        }`,
      );
    }
    if (claimed !== cert.spiffeId)
      throw permissionDenied(
        `no sufficient privileges: nsm-client-token sub "${claimed}" is not the caller's certificate identity ` +
          `"${cert.spiffeId ?? ""}"`,
      );
  }
  const exp = decodeToken(presented.token).exp;
  if (exp === undefined || exp * 1000 <= Date.now())
    throw unauthenticated("no sufficient privileges: nsm-client-token has expired (or has no exp)");
  return { id: callerId(ctx) ?? claimed, token: presented.token };
}

const ownExpiryKey = Symbol("registry-own-token-expiry");

/**
 * When the token this hop put in its own path segment for the current Register/Unregister expires (upstream
 * updatepath's ExpirationTimeFromContext; `expire` caps registrations by it). Undefined for in-process calls.
 */
export function ownTokenExpiry(ctx: CallContext): Date | undefined {
  return ctx.get<Date>(ownExpiryKey);
}

/**
 * `updatetoken` (registry server): checks the caller's token, puts it in the caller's segment and a fresh one
 * of ours in our segment; the item's path_ids become the identities of segments 0..index — for a direct call
 * [caller, us], with "" for a caller that presented no token (insecure mode), as upstream.
 */
export function updateTokenRegistry<T extends WithPathIds, Q, R>(
  sign: Signer,
  insecure: boolean,
  trustBundle?: () => string | undefined,
): RegistryServer<T, Q, R> {
  const stamp = async (item: T, ctx: CallContext): Promise<T> => {
    if (ctx.internal) return item;
    const caller = await provenCaller(ctx, insecure, trustBundle);
    const own = await sign(caller ? [caller.id] : []);
    // Upstream's token for a TLS peer expires no later than the peer's certificate.
    const notAfter = peerCert(ctx.peerCertificate)?.notAfter;
    const expires = notAfter && notAfter < own.expires ? notAfter : own.expires;
    ctx.set(ownExpiryKey, expires);
    const path = pathFromContext(ctx);
    if (!path) return { ...item, pathIds: caller ? [caller.id] : [] };
    const prev = path.segments[path.index - 1];
    if (prev) prev.token = caller?.token ?? "";
    const seg = path.segments[path.index]!;
    seg.token = own.token;
    seg.expires = msToTimestamp(own.expires.getTime());
    return { ...item, pathIds: path.segments.slice(0, path.index + 1).map((s) => subOf(s.token)) };
  };
  return {
    name: "updatetoken",
    register: async (item, ctx, next) => next.register(await stamp(item, ctx), ctx),
    unregister: async (item, ctx, next) => next.unregister(await stamp(item, ctx), ctx),
  };
}

/** `authorize` (registry server): only the original registrant may re-register or remove a name. */
export function authorizeRegistry<T extends WithPathIds, Q, R>(
  existing: (name: string) => string[] | undefined,
): RegistryServer<T, Q, R> {
  const check = (item: T, ctx: CallContext): void => {
    if (ctx.internal) return;
    registryClientAllowed(item.name, item.pathIds[0] ?? "", existing(item.name));
  };
  return {
    name: "authorize",
    register: (item, ctx, next) => (check(item, ctx), next.register(item, ctx)),
    unregister: (item, ctx, next) => (check(item, ctx), next.unregister(item, ctx)),
  };
}

/**
 * Metadata for a registry call: our token for `audience` (the registry's or nsmgr's SPIFFE ID), and the
 * registration path (ours, or the one we are proxying).
 */
export async function registryCallMetadata(
  sign: Signer,
  ctx: CallContext | undefined,
  selfName: string,
  audience: string[] = [],
): Promise<Metadata> {
  const own = await sign(audience);
  const md = tokenMetadata(own.token, own.expires, new Metadata());
  const proxied = ctx ? pathFromContext(ctx) : undefined;
  const path: RegistryPath = proxied
    ? structuredClone(proxied)
    : {
        index: 0,
        segments: [
          {
            name: selfName,
            id: randomUUID(),
            token: own.token,
            expires: msToTimestamp(own.expires.getTime()),
          },
        ],
      };
  md.set("path", formatPath(path));
  return md;
}
