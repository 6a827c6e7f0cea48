// Registry `grpcmetadata` + `updatepath` (spec §1.10.3): the caller sends the registration path as JSON in
// the `path` request metadata; on Register and Unregister this hop takes or adds its own segment, and returns
// the updated path in the `path` response header. As upstream: calls without path metadata (plain clients)
// start an empty path and get no header back; Find neither reads nor returns a path.
import { randomUUID } from "node:crypto";
import type { Timestamp } from "../api/google/protobuf/timestamp.js";
import type { CallContext } from "../core/context.js";
import { invalidArgument } from "../core/errors.js";
import type { RegistryServer } from "../core/registrychain.js";

export interface RegistrySegment {
  name: string;
  id: string;
  token: string;
  expires?: Timestamp;
}

export interface RegistryPath {
  index: number;
  segments: RegistrySegment[];
}

const pathKey = Symbol("registry-path");
const field = "metadata path";

export function pathFromContext(ctx: CallContext): RegistryPath | undefined {
  return ctx.get<RegistryPath>(pathKey);
}

/** Parses the `path` metadata value. Both Go's capitalised keys and lower-case keys are accepted. */
export function parsePath(text: string): RegistryPath {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalidArgument(field, `not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw invalidArgument(field, "must be a JSON object");
  const o = raw as Record<string, unknown>;
  const index = o.Index ?? o.index ?? 0;
  if (typeof index !== "number" || !Number.isInteger(index) || index < 0)
    throw invalidArgument(`${field}.Index`, "must be a non-negative integer");
  const segs = o.PathSegments ?? o.path_segments ?? [];
  if (!Array.isArray(segs)) throw invalidArgument(`${field}.PathSegments`, "must be an array");
  if (segs.length > 64) throw invalidArgument(`${field}.PathSegments`, `has ${segs.length} segments, max 64`);
  const segments = segs.map((s: unknown, i): RegistrySegment => {
    if (typeof s !== "object" || s === null)
      throw invalidArgument(`${field}.PathSegments[${i}]`, "must be an object");
    const r = s as Record<string, unknown>;
    const str = (k: string): string => {
      const v = r[k] ?? "";
      if (typeof v !== "string")
        throw invalidArgument(`${field}.PathSegments[${i}].${k}`, "must be a string");
      return v;
    };
    const seg: RegistrySegment = { name: str("name"), id: str("id"), token: str("token") };
    const exp = r.expires as { seconds?: unknown; nanos?: unknown } | undefined;
    if (exp && typeof exp === "object")
      seg.expires = { seconds: Number(exp.seconds ?? 0), nanos: Number(exp.nanos ?? 0) };
    return seg;
  });
  if (index > segments.length)
    throw invalidArgument(`${field}.Index`, `${index} is past the ${segments.length} segments`);
  return { index, segments };
}

export function formatPath(p: RegistryPath): string {
  return JSON.stringify({
    Index: p.index,
    PathSegments: p.segments.map((s) => ({
      ...(s.name && { name: s.name }),
      ...(s.id && { id: s.id }),
      ...(s.token && { token: s.token }),
      ...(s.expires && { expires: s.expires }),
    })),
  });
}

/**
 * Moves the path to this hop: reuse our segment if the caller's index already points at it, else step to
 * the next segment (renaming a foreign one with a fresh id) or append one. Returns the caller's index.
 */
export function updatePath(p: RegistryPath, name: string): number {
  // An empty path is a caller's first call: a segment for the caller, then ours (upstream updatepath makes
  // [peer, self] with index 1), so path_ids bind the registration to the caller, not to us.
  if (p.segments.length === 0) {
    p.index = 1;
    p.segments.push({ name: "", id: randomUUID(), token: "" }, { name, id: randomUUID(), token: "" });
    return 0;
  }
  if (p.index < p.segments.length && p.segments[p.index]!.name === name) return p.index;
  const nextIndex = p.index + 1;
  if (nextIndex > p.segments.length) {
    throw invalidArgument(
      `${field}.Index`,
      `Index+1=${nextIndex} must be <= the ${p.segments.length} segments`,
    );
  }
  if (nextIndex < p.segments.length && p.segments[nextIndex]!.name !== name) {
    p.segments[nextIndex] = { name, id: randomUUID(), token: "" };
  }
  p.index = nextIndex;
  if (p.index >= p.segments.length) p.segments.push({ name, id: randomUUID(), token: "" });
  return p.index - 1;
}

export function updatePathServer<T, Q, R>(hopName: string): RegistryServer<T, Q, R> {
  interface Entered {
    path: RegistryPath;
    callerIndex: number;
    /** The caller sent a path: it gets the updated one back (upstream grpcmetadata). */
    reply: boolean;
  }
  const enter = (ctx: CallContext): Entered => {
    const raw = ctx.metadata.get("path")[0];
    // No path metadata (a plain client) is an empty path, as upstream's updatepath reads it.
    const path =
      raw === undefined
        ? { index: 0, segments: [] }
        : parsePath(typeof raw === "string" ? raw : raw.toString("utf8"));
    const callerIndex = updatePath(path, hopName);
    ctx.set(pathKey, path);
    return { path, callerIndex, reply: raw !== undefined };
  };
  const leave = (ctx: CallContext, s: Entered): void => {
    s.path.index = s.callerIndex;
    if (s.reply) ctx.responseHeaders.set("path", formatPath(s.path));
  };
  return {
    name: "updatepath",
    register: async (item, ctx, next) => {
      const s = enter(ctx);
      const out = await next.register(item, ctx);
      leave(ctx, s);
      return out;
    },
    unregister: async (item, ctx, next) => {
      const s = enter(ctx);
      await next.unregister(item, ctx);
      leave(ctx, s);
    },
  };
}
