// A secure mesh on real SPIRE (v1.13.3) SVIDs that rotate under live connections (issue 12 item 5): registry,
// nsmgr, noop forwarder and icmp-responder NSE run as CLI processes, each with its own primary gid, so
// spire-agent's unix attestor gives each its own registration entry and SPIFFE ID; the in-process NsmClient
// takes the test process's own entry. SVIDs live 30 s, so the agent rotates them (at about half life) while
// the test watches: the connection made before must keep refreshing, the nsmgr must still list it, a new
// Request must succeed, and a new TLS handshake must see the rotated certificate.
// Needs the SPIRE binaries (scripts/build-spire.sh builds them); skips, saying so, only when they are absent.
// test/e2e/rotation.test.ts is the same mesh on test Workload API servers, rotated on demand (fast).
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Connection } from "../../src/api/connection.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity, type Security } from "../../src/components/security.js";
import { spiffeIdFromCertificate, type Identity } from "../../src/security/identity.js";
import { identityFromWorkloadApi, type WorkloadApiSource } from "../../src/security/workloadapi.js";
import {
  assertChained,
  certificateOf,
  nsmgrConnections,
  signedBy,
  startHops,
  type SvidMesh,
} from "../helpers/svidmesh.js";
import { eventually, startComponent, tempDir, type Component } from "../helpers/proc.js";
import { Spire, spireBinDir, spireBinaries, workloadSelectors } from "../helpers/spire.js";

const skip = spireBinaries()
  ? false
  : `SPIRE binaries not found in ${spireBinDir()}: run scripts/build-spire.sh`;

const td = "nsm.test";
const hops = ["registry", "nsmgr", "forwarder", "nse"] as const;
type Hop = (typeof hops)[number];
const idOf = (name: string): string => `spiffe://${td}/${name}`;
/** Each component's primary group: any number works for root; these are unlikely to be real groups. */
const gids: Record<Hop, number> = { registry: 47_201, nsmgr: 47_202, forwarder: 47_203, nse: 47_204 };
const nscId = idOf("nsc");
const pathIds = [nscId, idOf("nsmgr"), idOf("forwarder"), idOf("nse")];
/** Short-lived SVIDs: the agent renews them past half their life, within the test. */
const ttlSeconds = 30;
const service = "spire-mesh-svc";

/** Made in before(): a skipped suite leaves nothing behind. */
let dir: { path: string; remove(): void } | undefined;
const sock = (n: string): string => `unix://${join(dir?.path ?? "", `${n}.sock`)}`;
const mesh: SvidMesh = { td, url: sock, pathIds };
const procs = new Map<Hop, Component>();
let spire: Spire | undefined;
let source: WorkloadApiSource;
let security: Security;
let nsc: NsmClient;
const sourceErrors: string[] = [];
const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`;

/** The certificates every hop (and this client) holds now, by SPIFFE ID, from new handshakes. */
async function currentKeys(): Promise<Map<string, X509Certificate>> {
  const out = new Map<string, X509Certificate>();
  out.set(nscId, new X509Certificate(source.current().certificatePem ?? ""));
  for (const hop of hops) out.set(idOf(hop), await certificateOf(mesh, hop, source));
  return out;
}

function logTail(hop: Hop, lines = 8): string {
  return `${hop} log tail:\n${(procs.get(hop)?.logs ?? []).slice(-lines).join("")}`;
}

const spki = (k: { export(o: { type: "spki"; format: "der" }): Buffer }): string =>
  k.export({ type: "spki", format: "der" }).toString("base64");

function nextRotation(src: WorkloadApiSource, timeoutMs: number): Promise<Identity> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(
        new Error(
          `no rotation within ${timeoutMs} ms (errors: ${sourceErrors.join("; ")})\n${spire?.logs()}`,
        ),
      );
    }, timeoutMs);
    const stop = src.onRotate((id) => {
      clearTimeout(timer);
      stop();
      resolve(id);
    });
  });
}

describe("a mesh on SPIRE SVIDs that rotate under live connections", { skip }, () => {
  let conn: Connection;
  /** The serials of what the hops presented before the rotation. */
  const before0 = new Map<string, string>();
  let clientKeyBefore = "";
  /** What the nsmgr presented to the client's channel before the rotation (its public key). */
  let nsmgrKeyBefore = "";

  before(async () => {
    dir = tempDir("nsm-spire-mesh-");
    const uid = process.getuid?.() ?? 0;
    spire = await Spire.start({
      trustDomain: td,
      x509SvidTtl: "1m",
      entries: [
        ...hops.map((hop) => ({
          spiffeId: idOf(hop),
          selectors: workloadSelectors(gids[hop], uid),
          x509SvidTtlSeconds: ttlSeconds,
        })),
        {
          spiffeId: nscId,
          selectors: workloadSelectors(process.getgid?.() ?? 0, uid),
          x509SvidTtlSeconds: ttlSeconds,
        },
      ],
    });
    const env = { SPIFFE_ENDPOINT_SOCKET: spire.workloadApiAddr };
    const start = async (hop: Hop, command: string[], args: string[], ready: string): Promise<void> => {
      const c = await startComponent([...command, "--name", hop, ...args], ready, env, {
        gid: gids[hop],
        timeoutMs: 40_000,
      }).catch((e: Error) => {
        throw new Error(`${e.message}\n${spire?.logs()}`);
      });
      procs.set(hop, c);
    };
    await startHops(
      mesh,
      start,
      () => procs.get("registry")?.urls[0] ?? sock("registry"),
      service,
      "169.254.31.0/24",
    );
    source = await identityFromWorkloadApi(spire.workloadApiAddr, {
      spiffeId: nscId,
      timeoutMs: 30_000,
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
    await spire?.stop();
    dir?.remove();
  });

  it("every component runs with the SVID SPIRE issued for its own entry", async () => {
    for (const hop of hops) {
      const line = procs
        .get(hop)
        ?.logs.map((l) => {
          try {
            return JSON.parse(l) as { msg?: string; spiffeId?: string };
          } catch {
            return {};
          }
        })
        .find((r) => r.msg === "X.509-SVID from the Workload API");
      assert.equal(line?.spiffeId, idOf(hop), `${hop} logged its SVID`);
      const cert = await certificateOf(mesh, hop, source);
      assert.equal(spiffeIdFromCertificate(cert), idOf(hop), `${hop} presents its own SVID`);
      const ca = new X509Certificate(spire!.bundlePem);
      assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), `${hop}'s SVID is signed by SPIRE's CA`);
    }
    assert.equal(source.current().spiffeId, nscId);
  });

  it("the client connects; every segment's token is its hop's SPIFFE ID, addressed to the next hop", async () => {
    conn = await nsc.request({ service });
    assertChained(mesh, conn);
    const certs = await currentKeys();
    assert.ok(await signedBy(conn, certs), "every token signed by its hop's current SVID");
    for (const [id, cert] of certs) before0.set(id, cert.serialNumber);
    clientKeyBefore = source.current().keyPem ?? "";
    const peer = security.peerOf(sock("nsmgr"));
    assert.ok(peer, "the client's channel has shaken hands with the nsmgr");
    nsmgrKeyBefore = spki(peer.publicKey);
  });

  it("the SVIDs rotate: the client's source follows, new handshakes see the hops' new certificates", async (t) => {
    const mine = await nextRotation(source, 40_000);
    t.diagnostic(`client SVID rotated at ${elapsed()}`);
    assert.equal(mine.spiffeId, nscId);
    assert.notEqual(mine.keyPem, clientKeyBefore, "a new key");
    assert.notEqual(new X509Certificate(mine.certificatePem ?? "").serialNumber, before0.get(nscId));
    for (const hop of hops) {
      let seen = "";
      await eventually(
        async () => (seen = (await certificateOf(mesh, hop, source)).serialNumber) !== before0.get(idOf(hop)),
        20_000,
        `a new TLS connection to the ${hop} to present a rotated certificate`,
      ).catch((e: Error) => assert.fail(`${e.message} (still ${seen})\n${spire?.logs()}`));
      t.diagnostic(`${hop} presents a rotated SVID at ${elapsed()}`);
    }
    assert.deepEqual(sourceErrors, []);
  });

  it("the connection made before the rotation refreshes with the new SVIDs", async () => {
    let last: Connection | undefined;
    // Refreshes run every ~3 s; one after the rotation has every hop's token signed with its current key.
    await eventually(
      async () => {
        last = nsc.connections().find((c) => c.id === conn.id);
        return last !== undefined && (await signedBy(last, await currentKeys()));
      },
      15_000,
      "a refresh signed by the rotated SVIDs",
    ).catch((e: Error) => assert.fail(`${e.message}\n${logTail("nsmgr")}`));
    assertChained(mesh, last!);
    const again = await nsc.request({ service, id: conn.id });
    assert.equal(again.id, conn.id);
    assertChained(mesh, again);
  });

  it("the nsmgr still lists the connection", async () => {
    const listed = await nsmgrConnections(mesh, source);
    const mine = listed.find((c) => c.path?.pathSegments[0]?.id === conn.id);
    assert.ok(
      mine,
      `connection ${conn.id} in the nsmgr's MonitorConnections: ${listed.map((c) => c.id).join(", ")}`,
    );
    assert.equal(mine.networkService, service);
  });

  it("live TLS links carry on: the client's channel to the nsmgr did not shake hands again", () => {
    // The refreshes above went over the link made before the rotation, which still shows the old certificate.
    const peer = security.peerOf(sock("nsmgr"));
    assert.equal(peer && spki(peer.publicKey), nsmgrKeyBefore);
  });

  it("a new Request after the rotation succeeds", async (t) => {
    const fresh = await nsc.request({ service, id: "nsc-after-rotation" });
    assertChained(mesh, fresh);
    assert.ok(await signedBy(fresh, await currentKeys()));
    t.diagnostic(`done at ${elapsed()}`);
  });
});
