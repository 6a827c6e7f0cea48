// Checks shared by the SVID-rotation meshes (test/e2e/rotation.test.ts on test Workload API servers,
// test/e2e/spire-mesh.test.ts on SPIRE): what a NEW TLS handshake shows, what the nsmgr lists, and whether a
// connection's tokens are chained and signed by the identities the test expects.
import assert from "node:assert/strict";
import { X509Certificate, type KeyObject } from "node:crypto";
import { MonitorConnectionService, type Connection } from "../../src/api/connection.js";
import { GrpcClient } from "../../src/core/client.js";
import {
  channelCredentials,
  secureChannelOptions,
  trustDomainAuthorizer,
} from "../../src/security/credentials.js";
import type { IdentitySource } from "../../src/security/source.js";
import { decodeToken, verifyToken } from "../../src/security/token.js";

export interface SvidMesh {
  /** Trust domain of every SVID in the mesh. */
  td: string;
  /** A hop's URL by name. */
  url: (hop: string) => string;
  /** A Request's path by SPIFFE ID: client, nsmgr, forwarder, endpoint. */
  pathIds: readonly string[];
}

function freshClient(
  m: SvidMesh,
  url: string,
  own: IdentitySource,
  onPeer?: (der: Buffer) => void,
): GrpcClient {
  return new GrpcClient(
    url,
    // Its own subchannel: a new TLS handshake, never one of the process's existing connections.
    { ...secureChannelOptions(own.current()), "grpc.use_local_subchannel_pool": 1 },
    channelCredentials(own, trustDomainAuthorizer([m.td]), onPeer),
  );
}

/** The certificate `hop` presents to a NEW TLS connection. */
export async function certificateOf(m: SvidMesh, hop: string, own: IdentitySource): Promise<X509Certificate> {
  let raw: Buffer | undefined;
  const c = freshClient(m, m.url(hop), own, (der) => (raw = der));
  try {
    await c.waitReady(5_000);
  } finally {
    c.close();
  }
  assert.ok(raw, `the handshake showed the ${hop}'s certificate`);
  return new X509Certificate(raw);
}

/** The connections the nsmgr's MonitorConnections shows `own`, asked on a NEW TLS connection. */
export async function nsmgrConnections(m: SvidMesh, own: IdentitySource): Promise<Connection[]> {
  const c = freshClient(m, m.url("nsmgr"), own);
  const s = c.serverStream(MonitorConnectionService.monitorConnections, {
    pathSegments: [],
    networkServices: [],
  });
  try {
    for await (const ev of s) return Object.values(ev.connections);
    return [];
  } finally {
    s.cancel();
    c.close();
  }
}

/** Each segment's token names its hop as `sub` and is addressed to the next hop (the last: to its caller). */
export function assertChained(m: SvidMesh, conn: Connection): void {
  const claims = (conn.path?.pathSegments ?? []).map((s) => decodeToken(s.token));
  assert.deepEqual(
    claims.map((c) => c.sub),
    m.pathIds,
  );
  for (let i = 0; i < claims.length; i++) {
    const next = i + 1 < claims.length ? m.pathIds[i + 1] : m.pathIds[i - 1];
    assert.deepEqual(claims[i]!.aud, [next], `segment ${i} (${m.pathIds[i]}) aud`);
  }
}

/** Whether every segment's token is signed by the key `keys` holds for its `sub`. */
export async function signedBy(
  conn: Connection,
  keys: ReadonlyMap<string, { publicKey: KeyObject }>,
): Promise<boolean> {
  for (const s of conn.path?.pathSegments ?? []) {
    const key = keys.get(decodeToken(s.token).sub ?? "")?.publicKey;
    if (!key) return false;
    try {
      await verifyToken(s.token, key);
    } catch {
      return false;
    }
  }
  return true;
}

/** The hops of an SVID mesh. */
export type MeshHop = "registry" | "nsmgr" | "forwarder" | "nse";

/** Starts one hop as a CLI process: `nsm <command> --name <hop> <args>`, ready at `ready`. */
export type StartHop = (hop: MeshHop, command: string[], args: string[], ready: string) => Promise<void>;

/**
 * Starts registry, nsmgr, noop forwarder and an icmp-responder NSE of `service` handing out `cidr`, in that
 * order, each on `m.url(<hop>)`. `registryUrl` is read once the registry is up.
 */
export async function startHops(
  m: SvidMesh,
  start: StartHop,
  registryUrl: () => string,
  service: string,
  cidr: string,
): Promise<void> {
  await start(
    "registry",
    ["registry"],
    ["--store", "memory", "--listen-on", m.url("registry")],
    "registry serving",
  );
  await start(
    "nsmgr",
    ["nsmgr"],
    ["--listen-on", m.url("nsmgr"), "--registry-url", registryUrl()],
    "nsmgr ready",
  );
  await start(
    "forwarder",
    ["forwarder", "noop"],
    ["--listen-on", m.url("forwarder"), "--connect-to", m.url("nsmgr")],
    "forwarder ready",
  );
  await start(
    "nse",
    ["nse", "icmp-responder"],
    ["--listen-on", m.url("nse"), "--connect-to", m.url("nsmgr"), "--services", service, "--cidr", cidr],
    "endpoint ready",
  );
}
