// The dashboard's model, built from scratch from what the watches hold: registry records give the nsmgrs,
// forwarders and endpoints and where they run; the nsmgrs' MonitorConnections give the connections. Pure: the
// same snapshot always gives the same graph.
import type { Connection } from "../api/connection.js";
import { buildConnections, type Directory, type PlacedView } from "./connections.js";
import {
  expiresOf,
  labelsOf,
  mergeRecords,
  nodeNameOf,
  registeredNsmgrs,
  registrarOf,
  type RegisteredNsmgr,
  type RegistrySnapshot,
} from "./records.js";
import type {
  Graph,
  GraphClient,
  GraphEndpoint,
  GraphForwarder,
  GraphNode,
  GraphNsmgr,
  GraphService,
  WatchStatus,
} from "./types.js";

/** One watched nsmgr: its MonitorConnections view (the last one, when its stream is broken). */
export interface NsmgrSnapshot {
  url: string;
  /** Its name when known: given with the URL, or learnt from its connections or its certificate. */
  name?: string;
  status: WatchStatus;
  error?: string;
  connections: Connection[];
}

export interface MeshSnapshot {
  registries: RegistrySnapshot[];
  nsmgrs: NsmgrSnapshot[];
  /** The service forwarders register as (NSM_FORWARDER_NETWORK_SERVICE_NAME). */
  forwarderService: string;
  traceUiUrl?: string;
}

const unplaced = "unplaced";
const byName = <T extends { name: string }>(a: T, b: T): number => a.name.localeCompare(b.name);

/** A watched nsmgr's name: known, or the registry's nsmgr at the same URL, or the URL itself. */
export function watchedName(n: NsmgrSnapshot, registered: RegisteredNsmgr[]): string {
  return n.name ?? registered.find((r) => r.publicUrl === n.url)?.name ?? n.url;
}

export function buildGraph(s: MeshSnapshot, version: number, now = Date.now()): Graph {
  const records = mergeRecords(s.registries, now);
  const registered = registeredNsmgrs(records.endpoints);
  const nsmgrs = nsmgrsOf(s.nsmgrs, registered);
  const nodeOf = (nsmgr: string | undefined): string => (nsmgr && nsmgrs.get(nsmgr)?.node) || unplaced;

  const forwarders = new Map<string, GraphForwarder>();
  const endpoints = new Map<string, GraphEndpoint>();
  for (const e of records.endpoints) {
    const nsmgr = registrarOf(e);
    const common = {
      name: e.name,
      node: nodeNameOf(e) ?? nodeOf(nsmgr),
      ...(nsmgr ? { nsmgr } : {}),
      url: e.url,
      labels: labelsOf(e),
      ...(e.expirationTime ? { expires: expiresOf(e) } : {}),
    };
    if (e.networkServiceNames.includes(s.forwarderService)) forwarders.set(e.name, common);
    else endpoints.set(e.name, { ...common, services: [...e.networkServiceNames].sort() });
  }

  const views: PlacedView[] = s.nsmgrs.flatMap((n) =>
    n.connections.map((conn) => ({ nsmgr: watchedName(n, registered), status: n.status, conn })),
  );
  const dir: Directory = {
    nsmgrs,
    forwarders,
    endpoints,
    live: new Set(s.nsmgrs.filter((n) => n.status === "up").map((n) => watchedName(n, registered))),
    ...(s.traceUiUrl ? { traceUiUrl: s.traceUiUrl } : {}),
  };
  const connections = buildConnections(views, dir);
  const clients = new Map<string, GraphClient>();
  for (const c of connections) if (c.client) clients.set(c.client, { name: c.client, node: c.node });

  return {
    version,
    generatedAt: new Date(now).toISOString(),
    registries: s.registries
      .map((r) => ({ url: r.url, status: r.status, ...(r.error ? { error: r.error } : {}) }))
      .sort((a, b) => a.url.localeCompare(b.url)),
    nodes: nodesOf(
      [...nsmgrs.values()],
      [...forwarders.values()],
      [...endpoints.values()],
      [...clients.values()],
    ),
    nsmgrs: [...nsmgrs.values()].sort(byName),
    forwarders: [...forwarders.values()].sort(byName),
    endpoints: [...endpoints.values()].sort(byName),
    clients: [...clients.values()].sort(byName),
    services: servicesOf(records.services, [...endpoints.values()]),
    connections,
  };
}

/** Watched nsmgrs and the ones only the registry knows, one per name. */
function nsmgrsOf(watched: NsmgrSnapshot[], registered: RegisteredNsmgr[]): Map<string, GraphNsmgr> {
  const out = new Map<string, GraphNsmgr>();
  for (const r of registered) {
    out.set(r.name, {
      name: r.name,
      node: r.node ?? r.name,
      publicUrl: r.publicUrl,
      status: "unwatched",
      connections: 0,
    });
  }
  for (const n of watched) {
    const name = watchedName(n, registered);
    const known = out.get(name);
    // Without a registration to say, the node is the one its local clients report (clientinfo's nodeName).
    const local = n.connections.find((c) => c.path?.index === 1 && c.labels.nodeName);
    out.set(name, {
      name,
      node: known?.node ?? local?.labels.nodeName ?? name,
      url: n.url,
      ...(known?.publicUrl ? { publicUrl: known.publicUrl } : {}),
      status: n.status,
      ...(n.error ? { error: n.error } : {}),
      connections: n.connections.length,
    });
  }
  return out;
}

function nodesOf(
  nsmgrs: GraphNsmgr[],
  forwarders: GraphForwarder[],
  endpoints: GraphEndpoint[],
  clients: GraphClient[],
): GraphNode[] {
  const nodes = new Map<string, GraphNode>();
  const at = (name: string): GraphNode => {
    let n = nodes.get(name);
    if (!n) nodes.set(name, (n = { name, nsmgrs: [], forwarders: [], endpoints: [], clients: [] }));
    return n;
  };
  for (const x of [...nsmgrs].sort(byName)) at(x.node).nsmgrs.push(x.name);
  for (const x of [...forwarders].sort(byName)) at(x.node).forwarders.push(x.name);
  for (const x of [...endpoints].sort(byName)) at(x.node).endpoints.push(x.name);
  for (const x of [...clients].sort(byName)) at(x.node).clients.push(x.name);
  return [...nodes.values()].sort(byName);
}

function servicesOf(
  records: { name: string; payload: string }[],
  endpoints: GraphEndpoint[],
): GraphService[] {
  const out = new Map<string, GraphService>();
  for (const r of records) out.set(r.name, { name: r.name, payload: r.payload, endpoints: [] });
  for (const e of endpoints) {
    for (const s of e.services) {
      let svc = out.get(s);
      if (!svc) out.set(s, (svc = { name: s, payload: "", endpoints: [] }));
      svc.endpoints.push(e.name);
    }
  }
  return [...out.values()].sort(byName);
}
