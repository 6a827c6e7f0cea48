// SVID rotation in a secure mesh without dropping live connections, fast and without SPIRE: registry, nsmgr,
// noop forwarder and icmp-responder NSE run as CLI processes, each with its own SPIFFE Workload API socket
// (test/helpers/workloadapi-server.ts, one TrustDomainCa), and an in-process NsmClient on a socket of its own.
// Every server rotates mid-test; the connection made before must keep refreshing over the links it has, the
// nsmgr must still list it, a new Request must succeed, and a new TLS handshake must see the new certificate.
// test/e2e/spire-mesh.test.ts is the same with a real SPIRE agent and its own rotation schedule.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Connection } from "../../src/api/connection.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity, type Security } from "../../src/components/security.js";
import { TrustDomainCa } from "../../src/security/ca.js";
import type { Identity } from "../../src/security/identity.js";
import { identityFromWorkloadApi, type WorkloadApiSource } from "../../src/security/workloadapi.js";
import { eventually, startComponent, tempDir, type Component } from "../helpers/proc.js";
import {
  assertChained,
  certificateOf,
  nsmgrConnections,
  signedBy,
  startHops,
  type SvidMesh,
} from "../helpers/svidmesh.js";
import { WorkloadApiServer } from "../helpers/workloadapi-server.js";

const td = "nsm.test";
const hops = ["registry", "nsmgr", "forwarder", "nse"] as const;
type Hop = (typeof hops)[number];
const idOf = (name: string): string => `spiffe://${td}/${name}`;
const nscId = idOf("nsc");
/** The path a Request takes, by SPIFFE ID. */
const pathIds = [nscId, idOf("nsmgr"), idOf("forwarder"), idOf("nse")];
const service = "rotation-svc";

/** Made in before(), removed in after(). */
let dir: { path: string; remove(): void } | undefined;
const sock = (n: string): string => `unix://${join(dir?.path ?? "", `${n}.sock`)}`;
const mesh: SvidMesh = { td, url: sock, pathIds };
const workloadSock = (n: string): string => join(dir?.path ?? "", `${n}-workload.sock`);
const procs = new Map<Hop, Component>();
const servers = new Map<Hop | "nsc", WorkloadApiServer>();
let source: WorkloadApiSource;
let security: Security;
let nsc: NsmClient;
const sourceErrors: string[] = [];

/** What every workload holds now, by SPIFFE ID. */
function currentIdentities(): Map<string, Identity> {
  return new Map([...servers.values()].map((s) => [s.current.spiffeId, s.current]));
}

const serialOf = (id: Identity): string => new X509Certificate(id.certificatePem ?? "").serialNumber;
const spki = (k: { export(o: { type: "spki"; format: "der" }): Buffer }): string =>
  k.export({ type: "spki", format: "der" }).toString("base64");

function logTail(hop: Hop, lines = 8): string {
  return `${hop} log tail:\n${(procs.get(hop)?.logs ?? []).slice(-lines).join("")}`;
}

describe("SVID rotation in a mesh (test Workload API servers)", () => {
  let conn: Connection;
  /** What the nsmgr presented to the client's channel before the rotation (its public key). */
  let nsmgrKeyBefore = "";
  let clientKeyBefore = "";

  before(async () => {
    dir = tempDir("nsm-rotation-");
    const ca = await TrustDomainCa.create(td);
    for (const name of [...hops, "nsc"] as const) {
      const server = new WorkloadApiServer(ca, idOf(name));
      await server.start(workloadSock(name));
      servers.set(name, server);
    }
    const start = async (hop: Hop, command: string[], args: string[], ready: string): Promise<void> => {
      const env = { SPIFFE_ENDPOINT_SOCKET: `unix://${workloadSock(hop)}` };
      procs.set(hop, await startComponent([...command, "--name", hop, ...args], ready, env));
    };
    await startHops(
      mesh,
      start,
      () => procs.get("registry")?.urls[0] ?? sock("registry"),
      service,
      "169.254.30.0/24",
    );
    source = await identityFromWorkloadApi(`unix://${workloadSock("nsc")}`, {
      timeoutMs: 10_000,
      onError: (e) => sourceErrors.push(e.message),
    });
    // Short tokens: the client refreshes every ~3 s (a fifth of the shortest token on a 4-hop path).
    security = createSecurity({ name: "nsc", source, tokenLifetimeMs: 15_000 });
    nsc = new NsmClient({ name: "nsc", nsmgrUrl: sock("nsmgr"), security, requestTimeoutMs: 10_000 });
  });

  after(async () => {
    await nsc?.closeAll().catch(() => undefined);
    security?.close();
    for (const hop of [...hops].reverse()) await procs.get(hop)?.stop();
    for (const s of servers.values()) s.stop();
    dir?.remove();
  });

  it("connects; every segment's token is its hop's SPIFFE ID, addressed to the next hop", async () => {
    conn = await nsc.request({ service });
    assertChained(mesh, conn);
    assert.ok(await signedBy(conn, currentIdentities()), "every token signed by its hop's current SVID");
    for (const hop of hops)
      assert.equal(
        (await certificateOf(mesh, hop, source)).serialNumber,
        serialOf(servers.get(hop)!.current),
      );
    const peer = security.peerOf(sock("nsmgr"));
    assert.ok(peer, "the client's channel has shaken hands with the nsmgr");
    nsmgrKeyBefore = spki(peer.publicKey);
    clientKeyBefore = source.current().keyPem ?? "";
  });

  it("every SVID rotates: the client's source follows, new handshakes see the new certificates", async () => {
    const rotated = new Promise<Identity>((resolve) => {
      const stop = source.onRotate((id) => {
        stop();
        resolve(id);
      });
    });
    const before = new Map(hops.map((hop) => [hop, serialOf(servers.get(hop)!.current)]));
    await Promise.all([...servers.values()].map((s) => s.rotate()));
    const mine = await rotated;
    assert.equal(mine.spiffeId, nscId);
    assert.notEqual(mine.keyPem, clientKeyBefore, "the client has a new key");
    assert.equal(mine, source.current());
    for (const hop of hops) {
      const want = serialOf(servers.get(hop)!.current);
      assert.notEqual(want, before.get(hop));
      let seen = "";
      await eventually(
        async () => (seen = (await certificateOf(mesh, hop, source)).serialNumber) === want,
        10_000,
        `a new TLS connection to the ${hop} to present its rotated certificate`,
      ).catch((e: Error) => assert.fail(`${e.message} (still ${seen})`));
    }
    assert.deepEqual(sourceErrors, []);
  });

  it("the connection made before the rotation refreshes with the new SVIDs", async () => {
    const ids = currentIdentities();
    let last: Connection | undefined;
    // Refreshes run every ~3 s; one after the rotation has every hop's token signed with its new key.
    await eventually(
      async () => {
        last = nsc.connections().find((c) => c.id === conn.id);
        return last !== undefined && (await signedBy(last, ids));
      },
      15_000,
      "a refresh signed by the rotated SVIDs",
    ).catch((e: Error) => assert.fail(`${e.message}\n${logTail("nsmgr")}`));
    assertChained(mesh, last!);
    // An explicit refresh (the same id again) goes through too.
    const again = await nsc.request({ service, id: conn.id });
    assert.equal(again.id, conn.id);
    assertChained(mesh, again);
    assert.ok(await signedBy(again, ids));
  });

  it("the nsmgr still lists the connection", async () => {
    const listed = await nsmgrConnections(mesh, source);
    const mine = listed.find((c) => c.path?.pathSegments[0]?.id === conn.id);
    assert.ok(
      mine,
      `connection ${conn.id} in the nsmgr's MonitorConnections (has: ${listed.map((c) => c.id).join(", ")})`,
    );
    assert.equal(mine.networkService, service);
  });

  it("live TLS links carry on: the client's channel to the nsmgr did not shake hands again", () => {
    // The refreshes above went over the link made before the rotation, which still shows the old certificate.
    const peer = security.peerOf(sock("nsmgr"));
    assert.equal(peer && spki(peer.publicKey), nsmgrKeyBefore);
  });

  it("a new Request after the rotation succeeds", async () => {
    const fresh = await nsc.request({ service, id: "nsc-after-rotation" });
    assertChained(mesh, fresh);
    assert.ok(await signedBy(fresh, currentIdentities()));
  });
});
