// `updatepath` (spec §2.2): moves Connection.path to this hop and sets connection.id to this hop's segment
// id; on the way back restores the caller's id and index. The same rules serve a hop's server and client side
// (the client side of a hop finds its own segment already current and keeps it).
import { randomUUID } from "node:crypto";
import type { Connection, Path } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { invalidArgument } from "../../core/errors.js";

const maxSegments = 32;

/** Moves the path to hop `name`; returns the caller's index. Mutates `conn`. */
export function updatePath(conn: Connection, name: string): number {
  const path: Path = (conn.path ??= { index: 0, pathSegments: [] });
  const segs = path.pathSegments;
  if (segs.length === 0) {
    path.index = 0;
    if (conn.id === "") conn.id = randomUUID();
    segs.push({ name, id: conn.id, token: "", expires: undefined, metrics: {} });
    return 0;
  }
  if (segs.length > maxSegments)
    throw invalidArgument("connection.path.path_segments", `${segs.length} segments, max ${maxSegments}`);
  if (path.index < segs.length && segs[path.index]!.name === name) {
    conn.id = segs[path.index]!.id;
    return path.index;
  }
  const nextIndex = path.index + 1;
  if (nextIndex > segs.length) {
    throw invalidArgument(
      "connection.path.index",
      `index ${path.index} is past the ${segs.length} path segments`,
    );
  }
  if (segs[path.index]!.id !== conn.id) {
    throw invalidArgument(
      "connection.id",
      `"${conn.id}" is not the id of path segment ${path.index} ("${segs[path.index]!.id}")`,
    );
  }
  if (nextIndex < segs.length && segs[nextIndex]!.name !== name) {
    segs[nextIndex] = { name, id: randomUUID(), token: "", expires: undefined, metrics: {} };
  }
  path.index = nextIndex;
  if (nextIndex >= segs.length)
    segs.push({ name, id: randomUUID(), token: "", expires: undefined, metrics: {} });
  conn.id = segs[nextIndex]!.id;
  return nextIndex - 1;
}

/** Puts the caller's view back: its id and index. */
function restore(conn: Connection, index: number): Connection {
  const seg = conn.path?.pathSegments[index];
  if (seg) {
    conn.id = seg.id;
    conn.path!.index = index;
  }
  return conn;
}

export function updatePathServer(name: string): NetworkServiceElement {
  return {
    name: "updatepath",
    async request(req, ctx, next) {
      const conn = (req.connection ??= emptyConnection());
      const index = updatePath(conn, name);
      return restore(await next.request(req, ctx), index);
    },
    close(conn, ctx, next) {
      updatePath(conn, name);
      return next.close(conn, ctx);
    },
  };
}

/** Client side: the NSC creates the first segment; a hop's outgoing side finds its own segment current. */
export const updatePathClient = updatePathServer;

export function emptyConnection(): Connection {
  return {
    id: "",
    networkService: "",
    mechanism: undefined,
    context: undefined,
    labels: {},
    path: undefined,
    networkServiceEndpointName: "",
    payload: "",
    state: 0,
  };
}
