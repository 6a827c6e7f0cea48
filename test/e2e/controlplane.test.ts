// Control plane end to end (issue 3): NSC → nsmgr → forwarder → NSE on one node and across two nsmgrs, with
// real processes over real sockets (no data plane: forwarders run `forwarder noop`).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import {
  ConnectionEventType,
  MonitorConnectionService,
  State,
  type Connection,
  type ConnectionEvent,
} from "../../src/api/connection.js";
import { NetworkServiceService } from "../../src/api/networkservice.js";
import { GrpcClient } from "../../src/core/client.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { RegistryClient, endpoint, service } from "../../src/registry/client.js";
import { registryCallMetadata } from "../../src/registry/security.js";
import { generatedIdentity } from "../../src/security/identity.js";
import { decodeToken, generateToken, tokenMetadata } from "../../src/security/token.js";
import { emptyConnection } from "../../src/networkservice/updatepath/updatepath.js";
import { kernelOffer } from "../../src/networkservice/mechanisms/kernel.js";
import { Mesh } from "../helpers/mesh.js";
import { eventually, startComponent, tokenOf } from "../helpers/proc.js";

const mesh = new Mesh();
const excludedFile = join(mesh.dir.path, "excluded_prefixes.yaml");
const colour = (app: string) => ({
  sourceSelector: {},
  routes: [{ destinationSelector: { app }, weight: 0 }],
  fallthrough: false,
  metadata: undefined,
});
let n1: { url: string; publicUrl: string };
let n2: { url: string; publicUrl: string };
let registry: RegistryClient;

function client(name: string, nsmgrUrl = n1.url, tokenLifetimeMs?: number): NsmClient {
  return new NsmClient({
    name,
    nsmgrUrl,
    security: createSecurity({ name, tokenLifetimeMs, insecure: true }),
  });
}

/** Every connection a hop holds, as the test operator (whom the mesh lets see all); errors throw. */
async function hopConnections(url: string): Promise<Connection[]> {
  const c = new GrpcClient(url);
  try {
    const s = c.serverStream(
      MonitorConnectionService.monitorConnections,
      { pathSegments: [], networkServices: [] },
      { metadata: await tokenOf() },
    );
    for await (const ev of s) {
      s.cancel();
      return Object.values(ev.connections);
    }
    throw new Error(`${url}: MonitorConnections ended without the initial state`);
  } finally {
    c.close();
  }
}

function codeOf(err: unknown): status {
  return (err as { code: status }).code;
}

describe("control plane e2e", () => {
  before(async () => {
    await mesh.registry();
    registry = new RegistryClient(mesh.registryUrl);
    writeFileSync(excludedFile, "prefixes:\n  - 169.254.1.0/30\n");
    n1 = await mesh.nsmgr("nsmgr-1", { NSM_EXCLUDED_PREFIXES_FILE: excludedFile });
    n2 = await mesh.nsmgr("nsmgr-2");
    await Promise.all([
      mesh.forwarder("fwd-1", n1.url),
      mesh.forwarder("fwd-2", n2.url),
      mesh.forwarder("fwd-sel", n1.url, "my_forwarder_capability=true"),
      mesh.nse("nse-local", n1.url, "icmp-local", "169.254.1.0/24", [
        "--dns-configs",
        JSON.stringify([{ dns_server_ips: ["169.254.1.53"], search_domains: ["svc.test"] }]),
      ]),
      mesh.nse("nse-remote", n2.url, "icmp-remote", "169.254.2.0/24"),
      mesh.nse("nse-rr-a", n1.url, "icmp-rr", "169.254.3.0/24"),
      mesh.nse("nse-rr-b", n1.url, "icmp-rr", "169.254.4.0/24"),
    ]);
    await registry.registerService(
      service({
        name: "icmp-sel",
        payload: "ETHERNET",
        matches: [
          {
            sourceSelector: {},
            routes: [],
            fallthrough: false,
            metadata: { labels: { my_forwarder_capability: "true" } },
          },
        ],
      }),
    );
    await mesh.nse("nse-sel", n1.url, "icmp-sel", "169.254.5.0/24", ["--payload", "ETHERNET"]);
    await registry.registerService(
      service({ name: "icmp-switch", payload: "ETHERNET", matches: [colour("blue")] }),
    );
    await Promise.all([
      mesh.nse("nse-blue", n1.url, "icmp-switch", "169.254.6.0/24", ["--labels", "app=blue"]),
      mesh.nse("nse-green", n1.url, "icmp-switch", "169.254.7.0/24", ["--labels", "app=green"]),
    ]);
  });

  after(async () => {
    registry?.close();
    await mesh.down();
  });

  it("local: 4 segments, IP context from the NSE, chained tokens, state UP; Close clears every hop", async () => {
    const nsc = client("nsc-local");
    const conn = await nsc.request({ service: "icmp-local", ifname: "nsm-1" });
    assert.deepEqual(
      conn.path!.pathSegments.map((s) => s.name),
      ["nsc-local", "nsmgr-1", "fwd-1", "nse-local"],
    );
    assert.equal(conn.path!.index, 0);
    assert.equal(conn.id, "nsc-local-0");
    assert.equal(conn.state, State.UP);
    assert.equal(conn.networkServiceEndpointName, "nse-local");
    assert.equal(conn.mechanism!.type, "KERNEL");
    assert.equal(conn.mechanism!.parameters.name, "nsm-1");
    const ip = conn.context!.ipContext!;
    assert.match(ip.srcIpAddrs[0]!, /^169\.254\.1\.\d+\/32$/);
    assert.match(ip.dstIpAddrs[0]!, /^169\.254\.1\.\d+\/32$/);
    for (const a of [...ip.srcIpAddrs, ...ip.dstIpAddrs]) {
      assert.ok(
        Number(a.split(".")[3]!.split("/")[0]) > 3,
        `${a} is outside the nsmgr's excluded 169.254.1.0/30`,
      );
    }
    assert.ok(ip.excludedPrefixes.includes("169.254.1.0/30"), "nsmgr added its excluded prefixes");
    assert.deepEqual(conn.context!.dnsContext!.configs, [
      { dnsServerIps: ["169.254.1.53"], searchDomains: ["svc.test"] },
    ]);
    // Every segment carries a token signed by its hop; each names the next hop as audience once known.
    const claims = conn.path!.pathSegments.map((s) => decodeToken(s.token));
    assert.deepEqual(
      claims.map((c) => c.sub),
      ["nsc-local", "nsmgr-1", "fwd-1", "nse-local"].map((n) => `spiffe://nsm-ts.local/${n}`),
    );
    for (const s of conn.path!.pathSegments) assert.ok(s.expires && s.expires.seconds * 1000 > Date.now());
    assert.ok(claims[3]!.aud.includes(claims[2]!.sub!), "the NSE's token is addressed to its caller");

    assert.equal((await hopConnections(n1.url)).length, 1);
    await nsc.closeAll();
    for (const url of [n1.url, mesh.sock("fwd-1"), mesh.sock("nse-local")]) {
      assert.deepEqual(await hopConnections(url), [], `no connection left at ${url}`);
    }
  });

  it("remote: 6 segments through two nsmgrs; the tunnel is VXLAN between the forwarders", async () => {
    const nsc = client("nsc-remote");
    const conn = await nsc.request({ service: "icmp-remote" });
    assert.deepEqual(
      conn.path!.pathSegments.map((s) => s.name),
      ["nsc-remote", "nsmgr-1", "fwd-1", "nsmgr-2", "fwd-2", "nse-remote"],
    );
    assert.match(conn.context!.ipContext!.srcIpAddrs[0]!, /^169\.254\.2\./);
    const [atFwd2] = await hopConnections(mesh.sock("fwd-2"));
    assert.equal(atFwd2!.mechanism!.type, "VXLAN", "fwd-2's incoming leg is VXLAN");
    assert.match(atFwd2!.mechanism!.parameters.vni!, /^\d+$/);
    await nsc.closeAll();
    for (const url of [n1.url, mesh.sock("fwd-1"), n2.url, mesh.sock("fwd-2"), mesh.sock("nse-remote")]) {
      assert.deepEqual(await hopConnections(url), [], `no connection left at ${url}`);
    }
  });

  it("monitor: a watcher of nsmgr sees UPDATE on Request and DELETE on Close", async () => {
    const g = new GrpcClient(n1.url);
    const events: ConnectionEvent[] = [];
    // The client watches its own connection (authmonitor shows a caller what it requested).
    const s = g.serverStream(
      MonitorConnectionService.monitorConnections,
      {
        pathSegments: [{ name: "nsc-mon", id: "", token: "", expires: undefined, metrics: {} }],
        networkServices: [],
      },
      { metadata: await tokenOf("nsc-mon") },
    );
    const reading = (async () => {
      try {
        for await (const ev of s) events.push(ev);
      } catch {
        /* cancelled */
      }
    })();
    const nsc = client("nsc-mon");
    await nsc.request({ service: "icmp-local" });
    await nsc.closeAll();
    await eventually(() => events.some((e) => e.type === ConnectionEventType.DELETE), 3000, "DELETE event");
    s.cancel();
    await reading;
    g.close();
    assert.deepEqual(
      events.map((e) => ConnectionEventType[e.type]),
      ["INITIAL_STATE_TRANSFER", "UPDATE", "DELETE"],
    );
    assert.equal(Object.values(events[1]!.connections)[0]!.state, State.UP);
  });

  it("refresh keeps the same addresses and endpoint", async () => {
    const nsc = client("nsc-refresh", n1.url, 2000); // 2 s tokens: refresh every ~0.4 s
    const first = await nsc.request({ service: "icmp-local" });
    const firstExp = first.path!.pathSegments[0]!.expires!.seconds;
    await eventually(
      () => (nsc.connections()[0]?.path?.pathSegments[0]?.expires?.seconds ?? 0) > firstExp,
      4000,
      "a refresh",
    );
    const now = nsc.connections()[0]!;
    assert.deepEqual(now.context!.ipContext!.srcIpAddrs, first.context!.ipContext!.srcIpAddrs);
    assert.deepEqual(now.context!.ipContext!.dstIpAddrs, first.context!.ipContext!.dstIpAddrs);
    assert.equal(now.networkServiceEndpointName, first.networkServiceEndpointName);
    assert.deepEqual(
      now.path!.pathSegments.map((s) => s.id),
      first.path!.pathSegments.map((s) => s.id),
    );
    await nsc.closeAll();
  });

  it("a client that vanishes is timed out: every hop closes its connection", async () => {
    const nsc = await startComponent(
      [
        "nsc",
        "--name",
        "nsc-vanish",
        "--connect-to",
        n1.url,
        "--service",
        "icmp-local",
        "--max-token-lifetime",
        "2s",
        // The noop forwarder plumbs nothing: there is no data path to check.
        "--liveness-check",
        "false",
      ],
      "nsc connected",
    );
    assert.equal(
      (await hopConnections(mesh.sock("nse-local"))).filter(
        (c) => c.path!.pathSegments[0]!.name === "nsc-vanish",
      ).length,
      1,
    );
    await nsc.kill();
    await eventually(
      async () =>
        (await hopConnections(mesh.sock("nse-local"))).every(
          (c) => c.path!.pathSegments[0]!.name !== "nsc-vanish",
        ),
      6000,
      "timeout close",
    );
    // The nsmgr drops its record when the Close it started has come back up the chain, a moment after the
    // endpoint dropped its own.
    await eventually(
      async () => (await hopConnections(n1.url)).every((c) => c.path!.pathSegments[0]!.name !== "nsc-vanish"),
      2000,
      "nsmgr forgets the timed-out connection",
    );
  });

  it("round robin: two requests land on the two endpoints of a service", async () => {
    const nsc = client("nsc-rr");
    const a = await nsc.request({ service: "icmp-rr" });
    const b = await nsc.request({ service: "icmp-rr" });
    assert.deepEqual([a.networkServiceEndpointName, b.networkServiceEndpointName].sort(), [
      "nse-rr-a",
      "nse-rr-b",
    ]);
    await nsc.closeAll();
  });

  it("select-forwarder: match metadata labels pick the forwarder with that capability", async () => {
    const nsc = client("nsc-sel");
    const conn = await nsc.request({ service: "icmp-sel" });
    assert.equal(conn.path!.pathSegments[2]!.name, "fwd-sel");
    const plain = await nsc.request({ service: "icmp-local" });
    assert.equal(
      plain.path!.pathSegments[2]!.name,
      "fwd-1",
      "services without that metadata use p2p forwarders",
    );
    await nsc.closeAll();
  });

  it("registry: path_ids record the registration path; only the original registrant may change a name", async () => {
    const [viaNsmgr] = await registry.findEndpoints({ name: "nse-local" });
    assert.deepEqual(viaNsmgr!.pathIds.slice(0, 2), [
      "spiffe://nsm-ts.local/nse-local",
      "spiffe://nsm-ts.local/nsmgr-1",
    ]);
    assert.equal(viaNsmgr!.pathIds.length, 3, "nse, nsmgr, registry");

    const a = createSecurity({ name: "owner-a", insecure: true });
    const b = createSecurity({ name: "intruder-b", insecure: true });
    const mdA = () => registryCallMetadata(a.sign, undefined, "owner-a");
    const mdB = () => registryCallMetadata(b.sign, undefined, "intruder-b");
    const nse = endpoint({ name: "owned", networkServiceNames: ["owned-svc"], url: "tcp://198.18.9.1:5001" });
    await registry.registerEndpoint(nse, { metadata: await mdA() });
    const denied = (e: unknown) =>
      codeOf(e) === status.PERMISSION_DENIED && /original registrant/.test((e as Error).message);
    await assert.rejects(
      registry.registerEndpoint({ ...nse, url: "tcp://198.18.9.2:5001" }, { metadata: await mdB() }),
      denied,
    );
    await assert.rejects(registry.unregisterEndpoint({ name: "owned" }, { metadata: await mdB() }), denied);
    await assert.rejects(
      registry.unregisterEndpoint({ name: "owned" }),
      denied,
      "anonymous callers cannot remove it either",
    );
    assert.equal((await registry.findEndpoints({ name: "owned" }))[0]!.url, "tcp://198.18.9.1:5001");
    await registry.registerEndpoint(nse, { metadata: await mdA() }); // the owner refreshes
    await registry.unregisterEndpoint({ name: "owned" }, { metadata: await mdA() });
    assert.equal((await registry.findEndpoints({ name: "owned" })).length, 0);
  });

  it("netsvcmonitor: changing the service's matches closes connections whose endpoint no longer matches", async () => {
    const nsc = client("nsc-switch");
    const conn = await nsc.request({ service: "icmp-switch" });
    assert.equal(conn.networkServiceEndpointName, "nse-blue");
    const mine = async () =>
      (await hopConnections(n1.url)).filter((c) => c.path!.pathSegments[0]!.name === "nsc-switch");
    assert.equal((await mine()).length, 1);
    await registry.registerService(
      service({ name: "icmp-switch", payload: "ETHERNET", matches: [colour("green")] }),
    );
    await eventually(
      async () => (await mine()).length === 0,
      4000,
      "nsmgr to close the connection to nse-blue",
    );
    assert.deepEqual(
      (await hopConnections(mesh.sock("nse-blue"))).filter(
        (c) => c.path!.pathSegments[0]!.name === "nsc-switch",
      ),
      [],
    );
    const again = await nsc.request({ service: "icmp-switch" });
    assert.equal(again.networkServiceEndpointName, "nse-green");
    await nsc.closeAll();
  });

  describe("rejections", () => {
    let g: GrpcClient;
    before(() => (g = new GrpcClient(n1.url)));
    after(() => g.close());

    const request = (conn: Partial<Connection>, prefs = [kernelOffer({})]) => ({
      connection: { ...emptyConnection(), ...conn },
      mechanismPreferences: prefs,
    });
    const segment = (name: string, id: string) => ({ name, id, token: "", expires: undefined, metrics: {} });

    async function tokenMd(lifetimeMs: number, tamper = false): Promise<Metadata> {
      const t = await generateToken(
        generatedIdentity("attacker"),
        [],
        lifetimeMs,
        undefined,
        lifetimeMs < 0 ? new Date(Date.now() - 60_000) : new Date(),
      );
      let token = t.token;
      if (tamper) {
        const [h, p, s] = token.split(".");
        const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
        claims.sub = "spiffe://nsm-ts.local/someone-else";
        token = [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
      }
      return tokenMetadata(token, t.expires);
    }

    const path = (id: string) => ({ index: 0, pathSegments: [segment("intruder", id)] });

    it("expired token → PERMISSION_DENIED", async () => {
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          request({ id: "x1", networkService: "icmp-local", path: path("x1") }),
          { metadata: await tokenMd(1000, false).then(() => tokenMd(-30_000)) },
        ),
        (e) => codeOf(e) === status.PERMISSION_DENIED && /expired/.test((e as Error).message),
      );
    });

    // A forged signature is not detectable here: this mesh runs insecure, where nobody is authenticated.
    // test/e2e/security.test.ts refuses forged, unsigned and foreign tokens under mTLS.

    it("no token at all → UNAUTHENTICATED", async () => {
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          request({ id: "x3", networkService: "icmp-local", path: path("x3") }),
        ),
        (e) => codeOf(e) === status.UNAUTHENTICATED,
      );
    });

    it("another caller's Close or reselect of a connection is refused and changes nothing", async () => {
      const owner = client("nsc-owner");
      const conn = await owner.request({ service: "icmp-local" });
      const intruder = createSecurity({ name: "nsc-intruder", insecure: true });
      const stolen = {
        ...conn,
        path: { ...conn.path!, pathSegments: conn.path!.pathSegments.map((s) => ({ ...s })) },
      };
      const denied = (e: unknown) => codeOf(e) === status.PERMISSION_DENIED;
      await assert.rejects(
        g.unary(NetworkServiceService.close, stolen, {
          metadata: await intruder.callMetadata(undefined as never, n1.url),
        }),
        denied,
      );
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          {
            connection: { ...stolen, state: State.RESELECT_REQUESTED },
            mechanismPreferences: [kernelOffer({})],
          },
          { metadata: await intruder.callMetadata(undefined as never, n1.url) },
        ),
        denied,
      );
      const atNsmgr = (await hopConnections(n1.url)).filter(
        (c) => c.path!.pathSegments[0]!.name === "nsc-owner",
      );
      assert.equal(atNsmgr.length, 1, "the owner's connection is still there");
      const again = await owner.request({ service: "icmp-local", id: conn.id });
      assert.deepEqual(
        again.context!.ipContext!.srcIpAddrs,
        conn.context!.ipContext!.srcIpAddrs,
        "and the owner can still refresh it",
      );
      await owner.closeAll();
    });

    it("unknown service → NOT_FOUND naming the service", async () => {
      const nsc = client("nsc-unknown");
      await assert.rejects(
        nsc.request({ service: "no-such-service" }),
        (e) => codeOf(e) === status.NOT_FOUND && /no-such-service/.test((e as Error).message),
      );
    });

    it("unsupported mechanism → INVALID_ARGUMENT listing what is supported", async () => {
      const md = await tokenMd(60_000);
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          request({ id: "x4", networkService: "icmp-local", path: path("x4") }, [
            { cls: "LOCAL", type: "MEMIF", parameters: {} },
          ]),
          { metadata: md },
        ),
        (e) =>
          codeOf(e) === status.INVALID_ARGUMENT &&
          /LOCAL\/MEMIF/.test((e as Error).message) &&
          /supported: KERNEL, VXLAN/.test((e as Error).message),
      );
    });

    it("malformed id or path → INVALID_ARGUMENT", async () => {
      const md = await tokenMd(60_000);
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          request({ id: "not-the-segment-id", networkService: "icmp-local", path: path("x5") }),
          { metadata: md },
        ),
        (e) => codeOf(e) === status.INVALID_ARGUMENT && /connection\.id/.test((e as Error).message),
      );
      await assert.rejects(
        g.unary(
          NetworkServiceService.request,
          request({
            id: "x6",
            networkService: "icmp-local",
            path: { index: 5, pathSegments: [segment("intruder", "x6")] },
          }),
          { metadata: md },
        ),
        (e) => codeOf(e) === status.INVALID_ARGUMENT && /path\.index/.test((e as Error).message),
      );
      await assert.rejects(
        g.unary(NetworkServiceService.request, request({ id: "x7", networkService: "" })),
        (e) => codeOf(e) === status.INVALID_ARGUMENT && /network_service/.test((e as Error).message),
      );
    });
  });
});
