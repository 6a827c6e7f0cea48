// Registry-side tokens and the registry policy (spec §4.2 path_ids, §5 registry/client_allowed): each hop of
// a registration path signs its segment; the record's path_ids are the identities along the path; once a
// name is registered only its original registrant (path_ids[0]) may update or remove it.
import { randomUUID } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import type { CallContext } from "../core/context.js";
import type { RegistryServer } from "../core/registrychain.js";
import { msToTimestamp } from "../core/time.js";
import { registryClientAllowed } from "../security/policy.js";
import { decodeToken, tokenFromMetadata, tokenMetadata, type GeneratedToken } from "../security/token.js";
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
 * `updatetoken` (registry server): the caller's segment gets the token it presented, ours a fresh one; the
 * item's path_ids become the identities of segments 0..index.
 */
export function updateTokenRegistry<T extends WithPathIds, Q, R>(sign: Signer): RegistryServer<T, Q, R> {
  const stamp = async (item: T, ctx: CallContext): Promise<T> => {
    const path = pathFromContext(ctx);
    const presented = tokenFromMetadata(ctx.metadata);
    // Without a path the caller is the registrant; without a token it is anonymous (no claim to the name).
    if (!path) return { ...item, pathIds: presented ? [subOf(presented.token)].filter(Boolean) : [] };
    const prev = path.segments[path.index - 1];
    if (prev && presented) {
      prev.token = presented.token;
      prev.expires = msToTimestamp(presented.expires.getTime());
    }
    const own = await sign(presented ? [subOf(presented.token)].filter(Boolean) : []);
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
  const check = (item: T): void =>
    registryClientAllowed(item.name, item.pathIds[0] ?? "", existing(item.name));
  return {
    name: "authorize",
    register: (item, ctx, next) => (check(item), next.register(item, ctx)),
    unregister: (item, ctx, next) => (check(item), next.unregister(item, ctx)),
  };
}

/** Metadata for a registry call: our token, and the registration path (ours, or the one we are proxying). */
export async function registryCallMetadata(
  sign: Signer,
  ctx: CallContext | undefined,
  selfName: string,
): Promise<Metadata> {
  const own = await sign([]);
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
