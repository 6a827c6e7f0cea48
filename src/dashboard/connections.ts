// Connections as the dashboard draws them: the views the watched nsmgrs give of one client's connection,
// grouped by the path's first segment id (the client's own id, which survives heals and reselects), turned into
// one entry with its path, its legs (each nsmgr reports the mechanism from its caller to its forwarder), its
// addresses, its state (state.ts) and its trace link.
import type { Connection } from "../api/connection.js";
import { stateToJSON } from "../api/connection.js";
import { timestampToMs } from "../core/time.js";
import { nameMechanism, tfContextOf } from "./mechanism.js";
import { classify, type ViewStatus } from "./state.js";
import { traceLink } from "./tracelink.js";
import type {
  GraphConnection,
  GraphLeg,
  GraphSegment,
  GraphView,
  SegmentRole,
  WatchStatus,
} from "./types.js";

/** A connection as one watched nsmgr holds it. */
export interface PlacedView {
  /** The watched nsmgr's name (resolved by the watcher). */
  nsmgr: string;
  status: WatchStatus;
  conn: Connection;
}

/** What the rest of the graph knows, to name the hops of a path. */
export interface Directory {
  nsmgrs: ReadonlyMap<string, { url?: string; publicUrl?: string; node: string }>;
  forwarders: ReadonlyMap<string, { url: string; labels: Record<string, string> }>;
  endpoints: ReadonlyMap<string, { url: string }>;
  /** Watched nsmgrs whose stream is live: one of these on a path without the connection has lost it. */
  live: ReadonlySet<string>;
  traceUiUrl?: string;
}

/** The path's first segment id, or undefined for a connection without a path. */
export function pathIdOf(conn: Connection): string | undefined {
  return conn.path?.pathSegments[0]?.id || undefined;
}

export function buildConnections(views: PlacedView[], dir: Directory): GraphConnection[] {
  const groups = new Map<string, PlacedView[]>();
  for (const v of views) {
    const id = pathIdOf(v.conn);
    if (id === undefined) continue;
    const g = groups.get(id);
    if (g) g.push(v);
    else groups.set(id, [v]);
  }
  return [...groups.entries()]
    .map(([id, g]) => buildConnection(id, g, dir))
    .sort((a, b) => a.id.localeCompare(b.id));
}

/** The name a view's own nsmgr has on the path (the segment at the view's index). */
function selfName(v: PlacedView): string {
  return v.conn.path?.pathSegments[v.conn.path.index]?.name || v.nsmgr;
}

function buildConnection(id: string, group: PlacedView[], dir: Directory): GraphConnection {
  const byIndex = (a: PlacedView, b: PlacedView): number =>
    (a.conn.path?.index ?? 0) - (b.conn.path?.index ?? 0);
  // The view nearest the client on a live stream has the whole current path (intermediate hops keep it all).
  const fresh = group.filter((v) => v.status === "up").sort(byIndex);
  const primary = fresh[0] ?? [...group].sort(byIndex)[0]!;
  const conn = primary.conn;
  const path = segmentsOf(conn, dir);
  const onPath = new Set(path.filter((s) => s.role === "nsmgr").map((s) => s.name));
  const current = group.filter((v) => onPath.has(selfName(v))).sort(byIndex);
  const holders = new Set(current.map(selfName));
  const missing = [...onPath].filter((n) => dir.live.has(n) && !holders.has(n));
  const tf = tfContextOf(conn.context?.extraContext);
  const legs = current.map((v) => legOf(v, tf, dir));
  const { state, reason } = classify(current.map(statusOf), missing);
  const client = path[0]?.name ?? "";
  const firstNsmgr = path.find((s) => s.role === "nsmgr")?.name;
  const ip = conn.context?.ipContext;
  const traceUrl = traceLink(dir.traceUiUrl, client, id);
  return {
    id,
    service: conn.networkService,
    client,
    endpoint: conn.networkServiceEndpointName,
    node: (firstNsmgr && dir.nsmgrs.get(firstNsmgr)?.node) || conn.labels.nodeName || "unplaced",
    state,
    reason,
    mechanism: [...new Set(legs.map((l) => l.kind))].join("+"),
    legs,
    path,
    addresses: { src: ip?.srcIpAddrs ?? [], dst: ip?.dstIpAddrs ?? [] },
    ...(tf ? { tf } : {}),
    views: group.map((v) => viewOf(v, onPath)).sort((a, b) => a.index - b.index),
    ...(traceUrl ? { traceUrl } : {}),
  };
}

function statusOf(v: PlacedView): ViewStatus {
  return { nsmgr: selfName(v), state: v.conn.state, stale: v.status !== "up" };
}

function viewOf(v: PlacedView, onPath: ReadonlySet<string>): GraphView {
  return {
    nsmgr: selfName(v),
    id: v.conn.id,
    index: v.conn.path?.index ?? 0,
    state: stateToJSON(v.conn.state),
    stale: v.status !== "up",
    onPath: onPath.has(selfName(v)),
  };
}

/** The leg an nsmgr set up: from its caller (the segment before it) to its forwarder (the one after). */
function legOf(v: PlacedView, tf: Record<string, string> | undefined, dir: Directory): GraphLeg {
  const segs = v.conn.path?.pathSegments ?? [];
  const i = v.conn.path?.index ?? 0;
  const to = segs[i + 1]?.name ?? "";
  const m = v.conn.mechanism;
  const named = nameMechanism(m, tf, dir.forwarders.get(to)?.labels.tf === "true");
  return {
    from: segs[i - 1]?.name ?? "",
    to,
    nsmgr: selfName(v),
    kind: named.kind,
    type: m?.type ?? "",
    cls: m?.cls ?? "",
    detail: named.detail,
    parameters: { ...(m?.parameters ?? {}) },
  };
}

function segmentsOf(conn: Connection, dir: Directory): GraphSegment[] {
  const segs = conn.path?.pathSegments ?? [];
  return segs.map((s, i) => {
    const role = roleOf(s.name, i, segs.length, dir);
    const url =
      role === "nsmgr"
        ? (dir.nsmgrs.get(s.name)?.url ?? dir.nsmgrs.get(s.name)?.publicUrl)
        : role === "forwarder"
          ? dir.forwarders.get(s.name)?.url
          : role === "endpoint"
            ? dir.endpoints.get(s.name)?.url
            : undefined;
    return {
      index: i,
      name: s.name,
      id: s.id,
      role,
      ...(url ? { url } : {}),
      ...(s.expires ? { expires: new Date(timestampToMs(s.expires)).toISOString() } : {}),
    };
  });
}

/**
 * By name where the registry or the watches know it; else by position in the usual path
 * (client, then nsmgr and forwarder per node, the endpoint last).
 */
function roleOf(name: string, i: number, n: number, dir: Directory): SegmentRole {
  if (i === 0) return "client";
  if (dir.nsmgrs.has(name)) return "nsmgr";
  if (dir.forwarders.has(name)) return "forwarder";
  if (dir.endpoints.has(name) || i === n - 1) return "endpoint";
  return i % 2 === 1 ? "nsmgr" : "forwarder";
}
