// The dashboard's model of the mesh: what GET /api/graph returns and /api/events pushes, and what the page
// draws. Plain JSON (no tokens: path segments carry names and ids only). Every list is sorted by name or id,
// so two builds of the same mesh are equal.

/** A watch of one registry or one nsmgr: `up` once it has streamed its current state. */
export type WatchStatus = "connecting" | "up" | "unreachable";

/**
 * up: every nsmgr on its path holds it UP. down: no reachable nsmgr holds it UP. healing: in between — UP at
 * one nsmgr, and DOWN, gone, or behind an unreachable stream at another nsmgr of its path (see state.ts).
 */
export type ConnectionState = "up" | "down" | "healing";

export type SegmentRole = "client" | "nsmgr" | "forwarder" | "endpoint";

export interface Graph {
  /** Increases with every change the backend publishes. */
  version: number;
  generatedAt: string;
  registries: GraphRegistry[];
  nodes: GraphNode[];
  nsmgrs: GraphNsmgr[];
  forwarders: GraphForwarder[];
  endpoints: GraphEndpoint[];
  clients: GraphClient[];
  services: GraphService[];
  connections: GraphConnection[];
}

export interface GraphRegistry {
  url: string;
  status: WatchStatus;
  error?: string;
}

/** A node: the nodeName label of what registered through its nsmgr, else the nsmgr's own name. */
export interface GraphNode {
  name: string;
  nsmgrs: string[];
  forwarders: string[];
  endpoints: string[];
  clients: string[];
}

export interface GraphNsmgr {
  name: string;
  node: string;
  /** The URL the dashboard watches (MonitorConnections); absent when it only knows it from the registry. */
  url?: string;
  /** The URL it registers its forwarders and endpoints with (other nodes reach it there). */
  publicUrl?: string;
  /** unwatched: known from the registry only (discovery off, or covered by another URL). */
  status: WatchStatus | "unwatched";
  error?: string;
  /** Connections it holds now. */
  connections: number;
}

export interface GraphForwarder {
  name: string;
  node: string;
  nsmgr?: string;
  /** As registered: its nsmgr's public URL (the nsmgr keeps the real one). */
  url: string;
  labels: Record<string, string>;
  expires?: string;
}

export interface GraphEndpoint {
  name: string;
  node: string;
  nsmgr?: string;
  url: string;
  services: string[];
  labels: Record<string, string>;
  expires?: string;
}

/** A client: the first segment of a connection's path. */
export interface GraphClient {
  name: string;
  node: string;
}

export interface GraphService {
  name: string;
  payload: string;
  endpoints: string[];
}

export interface GraphSegment {
  index: number;
  name: string;
  id: string;
  role: SegmentRole;
  /** Where the hop is reached, when the dashboard knows it (nsmgrs, and the registered URL of the rest). */
  url?: string;
  expires?: string;
}

/** One leg of the data path, as the nsmgr that set it up reports it: from its caller to its forwarder. */
export interface GraphLeg {
  from: string;
  to: string;
  nsmgr: string;
  /** veth (KERNEL), vxlan, tf-vn (a KERNEL leg into a TF virtual network), or the type in lower case. */
  kind: string;
  type: string;
  cls: string;
  /** Human summary: interface name, VNI and tunnel ends, VN name. */
  detail: string;
  parameters: Record<string, string>;
}

/** The connection as one nsmgr holds it. */
export interface GraphView {
  nsmgr: string;
  /** Connection id at that nsmgr (its own path segment's id). */
  id: string;
  index: number;
  state: string;
  /** The nsmgr's stream is broken: this is the last thing it said. */
  stale: boolean;
  /** The nsmgr is on the connection's current path (a leftover after a reselect is not). */
  onPath: boolean;
}

export interface GraphConnection {
  /** The path's first segment id: the client's connection id, stable across heals. */
  id: string;
  service: string;
  client: string;
  endpoint: string;
  /** The client's node. */
  node: string;
  state: ConnectionState;
  /** Why that state, for people. */
  reason: string;
  /** The legs' kinds in path order, e.g. "veth+vxlan". */
  mechanism: string;
  legs: GraphLeg[];
  path: GraphSegment[];
  addresses: { src: string[]; dst: string[] };
  /** What a TF virtual-network endpoint added to the connection context (tf.* keys). */
  tf?: Record<string, string>;
  views: GraphView[];
  /** A Jaeger search for this connection's traces (spans carry nsm.path.id), with --trace-ui-url. */
  traceUrl?: string;
}
