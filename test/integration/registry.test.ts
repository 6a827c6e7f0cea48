// The registry as a real process, over TCP and a unix socket: register/find/watch/expire/unregister,
// query semantics, path metadata, bad input, malformed frames, and survival of kill -9. The upstream-semantics
// cases (path_ids, expiration, watch and deleted events, Unregister of unknown names, NSEs of unregistered
// services; upstream sdk v1.18.0 registry chains) call the registry by upstream's literal method paths.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
  type NetworkServiceEndpointResponse,
  type NetworkServiceResponse,
} from "../../src/api/registry.js";
import { GrpcClient, collect, type ServerStream } from "../../src/core/client.js";
import { msToTimestamp, timestampToMs } from "../../src/core/time.js";
import { RegistryClient, endpoint, service } from "../../src/registry/client.js";
import { parsePath } from "../../src/registry/updatepath.js";
import { generatedIdentity } from "../../src/security/identity.js";
import { decodeToken, generateToken, tokenMetadata } from "../../src/security/token.js";
import { eventually, startComponent, tempDir, type Component } from "../helpers/proc.js";

const dir = tempDir("nsm-registry-test-");
const sock = join(dir.path, "registry.sock");
const db = join(dir.path, "registry.db");
const args = [
  "registry",
  "--name",
  "reg-test",
  "--store",
  "sqlite",
  "--db",
  db,
  "--listen-on",
  `tcp://127.0.0.1:0,unix://${sock}`,
];

/** Upstream's methods, each called by its literal path (not through the generated definitions). */
const NSD = NetworkServiceEndpointRegistryService;
const NSD_NS = NetworkServiceRegistryService;
const upstream = {
  nseRegister: { ...NSD.register, path: "/registry.NetworkServiceEndpointRegistry/Register" },
  nseFind: { ...NSD.find, path: "/registry.NetworkServiceEndpointRegistry/Find" },
  nseUnregister: { ...NSD.unregister, path: "/registry.NetworkServiceEndpointRegistry/Unregister" },
  nsRegister: { ...NSD_NS.register, path: "/registry.NetworkServiceRegistry/Register" },
  nsFind: { ...NSD_NS.find, path: "/registry.NetworkServiceRegistry/Find" },
  nsUnregister: { ...NSD_NS.unregister, path: "/registry.NetworkServiceRegistry/Unregister" },
};

/** The registry's identity: it runs insecure here, so it is the generated one of its --name. */
const registryId = generatedIdentity("reg-test").spiffeId;

/** A caller's token (insecure registry: the claim is taken), living `lifetimeMs`. */
async function callerMd(name: string, lifetimeMs = 600_000): Promise<grpc.Metadata> {
  const t = await generateToken(generatedIdentity(name), [registryId], lifetimeMs);
  return tokenMetadata(t.token, t.expires);
}

const subsOf = (pathHeader: string): string[] =>
  parsePath(pathHeader).segments.map((s) => (s.token ? (decodeToken(s.token).sub ?? "") : ""));

/** Reads a Find stream into `events` ("+name"/"-name") and `got` until `stop` cancels it. */
function reader<T extends NetworkServiceEndpointResponse | NetworkServiceResponse>(
  stream: ServerStream<T>,
  name: (r: T) => string,
) {
  const got: T[] = [];
  const events: string[] = [];
  const done = (async () => {
    try {
      for await (const r of stream) {
        got.push(r);
        events.push(`${r.deleted ? "-" : "+"}${name(r)}`);
      }
    } catch (err) {
      assert.equal(statusOf(err).code, grpc.status.CANCELLED);
    }
  })();
  const stop = (): Promise<void> => (stream.cancel(), done);
  return { got, events, stop };
}

let reg: Component;
let tcp: RegistryClient;
let unix: RegistryClient;

function statusOf(err: unknown): { code: grpc.status; details: string } {
  assert.ok(err && typeof err === "object" && "code" in err, `expected a gRPC error, got ${String(err)}`);
  return err as { code: grpc.status; details: string };
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status, field: string): Promise<void> {
  await assert.rejects(p, (err) => {
    const s = statusOf(err);
    assert.equal(s.code, code, `code ${grpc.status[s.code]} (${s.details}), want ${grpc.status[code]}`);
    assert.match(s.details, new RegExp(field.replace(/[.[\]]/g, "\\$&")));
    return true;
  });
}

describe("registry process", () => {
  before(async () => {
    reg = await startComponent(args, "registry serving");
    tcp = new RegistryClient(reg.urls.find((u) => u.startsWith("tcp://"))!);
    unix = new RegistryClient(`unix://${sock}`);
  });

  after(async () => {
    tcp?.close();
    unix?.close();
    await reg?.stop();
    dir.remove();
  });

  it("reports SERVING for each registry service in grpc.health.v1", async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, "Health");
    const client = new Health(reg.urls[0]!.replace("tcp://", ""), grpc.credentials.createInsecure());
    try {
      for (const name of ["", "registry.NetworkServiceRegistry", "registry.NetworkServiceEndpointRegistry"]) {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          (
            client as unknown as {
              check(r: object, cb: (e: Error | null, r: { status: string }) => void): void;
            }
          ).check({ service: name }, (e, r) => (e ? reject(e) : resolve(r))),
        );
        assert.equal(res.status, "SERVING", `health of "${name}"`);
      }
    } finally {
      client.close();
    }
  });

  it("serves the exact upstream method paths", async () => {
    const paths = {
      nsRegister: "/registry.NetworkServiceRegistry/Register",
      nsFind: "/registry.NetworkServiceRegistry/Find",
      nsUnregister: "/registry.NetworkServiceRegistry/Unregister",
      nseRegister: "/registry.NetworkServiceEndpointRegistry/Register",
      nseFind: "/registry.NetworkServiceEndpointRegistry/Find",
      nseUnregister: "/registry.NetworkServiceEndpointRegistry/Unregister",
    };
    const ns = NetworkServiceRegistryService;
    const nse = NetworkServiceEndpointRegistryService;
    assert.deepEqual(
      [
        ns.register.path,
        ns.find.path,
        ns.unregister.path,
        nse.register.path,
        nse.find.path,
        nse.unregister.path,
      ],
      Object.values(paths),
    );
    // Call the server by literal path, not through the generated definitions.
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const reply = await c.unary(
        { ...nse.register, path: paths.nseRegister },
        endpoint({ name: "by-path", url: "tcp://198.18.0.9:5001" }),
      );
      assert.equal(reply.response.name, "by-path");
      await c.unary({ ...nse.unregister, path: paths.nseUnregister }, endpoint({ name: "by-path" }));
      await assert.rejects(
        c.unary({ ...nse.register, path: "/registry.Registry/Register" }, endpoint({ name: "x" })),
        (e) => statusOf(e).code === grpc.status.UNIMPLEMENTED,
      );
    } finally {
      c.close();
    }
  });

  it("NetworkService: register defaults payload to IP, find, unregister, over tcp and unix", async () => {
    const stored = await tcp.registerService({ name: "svc-a", payload: "", matches: [], pathIds: [] });
    assert.equal(stored.payload, "IP");
    await tcp.registerService({ name: "svc-eth", payload: "ETHERNET", matches: [], pathIds: [] });
    assert.deepEqual(
      (await unix.findServices({ name: "svc-a" })).map((s) => s.payload),
      ["IP"],
    );
    assert.deepEqual(
      (await unix.findServices({ payload: "ETHERNET" })).map((s) => s.name),
      ["svc-eth"],
    );
    await unix.unregisterService("svc-a");
    assert.deepEqual(await tcp.findServices({ name: "svc-a" }), []);
    await unix.unregisterService("never-registered"); // no-op, not an error
  });

  it("NSE: expiration is clamped to the default period, kept when shorter; initial registration time survives refresh", async () => {
    const now = Date.now();
    const first = await tcp.registerEndpoint(
      endpoint({
        name: "nse-exp",
        networkServiceNames: ["svc-b"],
        url: "tcp://198.18.0.2:5001",
        expirationTime: msToTimestamp(now + 3_600_000),
      }),
    );
    const exp = timestampToMs(first.expirationTime!);
    assert.ok(
      exp <= Date.now() + 60_000 && exp >= now + 59_000,
      `expiration ${exp - now} ms from now, want ~60 s`,
    );
    assert.ok(first.initialRegistrationTime, "initial_registration_time set");
    const shorter = await unix.registerEndpoint(
      endpoint({
        name: "nse-exp",
        networkServiceNames: ["svc-b"],
        url: "tcp://198.18.0.2:5001",
        expirationTime: msToTimestamp(now + 30_000),
      }),
    );
    assert.equal(timestampToMs(shorter.expirationTime!), now + 30_000);
    assert.deepEqual(shorter.initialRegistrationTime, first.initialRegistrationTime);
    await tcp.unregisterEndpoint({ name: "nse-exp" });
  });

  it("Find: query fields are wildcards or filters (service, labels, url substring, name)", async () => {
    const mk = (name: string, svc: string[], app: string, url: string) =>
      tcp.registerEndpoint(
        endpoint({
          name,
          networkServiceNames: svc,
          networkServiceLabels: Object.fromEntries(svc.map((s) => [s, { labels: { app } }])),
          url,
        }),
      );
    await mk("q1", ["svc-q"], "web", "tcp://198.18.1.1:5001");
    await mk("q2", ["svc-q", "svc-r"], "db", "tcp://198.18.1.2:5001");
    await mk("q3", ["svc-r"], "web", "unix:///run/q3.sock");
    const names = async (q: Parameters<RegistryClient["findEndpoints"]>[0]) =>
      (await unix.findEndpoints(q)).map((n) => n.name).sort();
    assert.deepEqual(await names({ networkServiceNames: ["svc-q"] }), ["q1", "q2"]);
    assert.deepEqual(await names({ networkServiceNames: ["svc-q", "svc-r"] }), ["q2"]);
    assert.deepEqual(await names({ networkServiceLabels: { "svc-r": { labels: { app: "web" } } } }), ["q3"]);
    assert.deepEqual(await names({ url: "198.18.1." }), ["q1", "q2"]);
    assert.deepEqual(await names({ name: "q2" }), ["q2"]);
    assert.deepEqual(await names({ name: "q" }), []);
    for (const n of ["q1", "q2", "q3"]) await tcp.unregisterEndpoint({ name: n });
  });

  it("watch: current state, then updates, unregister and expiry as deleted events, until cancelled", async () => {
    await tcp.registerEndpoint(
      endpoint({ name: "w-old", networkServiceNames: ["svc-w"], url: "tcp://198.18.2.1:5001" }),
    );
    const stream = unix.watchEndpoints({ networkServiceNames: ["svc-w"] });
    const seen: string[] = [];
    const reading = (async () => {
      try {
        for await (const ev of stream)
          seen.push(`${ev.deleted ? "-" : "+"}${ev.networkServiceEndpoint!.name}`);
      } catch (err) {
        assert.equal(statusOf(err).code, grpc.status.CANCELLED);
      }
    })();
    await eventually(() => seen.includes("+w-old"), 3000, "initial state");
    await tcp.registerEndpoint(
      endpoint({ name: "w-new", networkServiceNames: ["svc-w"], url: "tcp://198.18.2.2:5001" }),
    );
    await tcp.registerEndpoint(
      endpoint({ name: "other", networkServiceNames: ["svc-other"], url: "tcp://198.18.2.3:5001" }),
    );
    await tcp.unregisterEndpoint({ name: "w-old" });
    await tcp.registerEndpoint(
      endpoint({
        name: "w-short",
        networkServiceNames: ["svc-w"],
        url: "tcp://198.18.2.4:5001",
        expirationTime: msToTimestamp(Date.now() + 800),
      }),
    );
    await eventually(() => seen.includes("-w-short"), 4000, "expiry event");
    assert.deepEqual(seen, ["+w-old", "+w-new", "-w-old", "+w-short", "-w-short"]);
    assert.deepEqual((await tcp.findEndpoints({ name: "w-short" })).length, 0, "expired NSE gone from Find");
    stream.cancel();
    await reading;
    await tcp.unregisterEndpoint({ name: "w-new" });
    await tcp.unregisterEndpoint({ name: "other" });
  });

  it("fans one change out to 200 concurrent watchers", async () => {
    // Four identities (claimed by token: this registry runs insecure) of 50 watchers each: one identity may
    // hold only 64 watches.
    const mds = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const t = await generateToken(generatedIdentity(`watcher-${i}`), [], 60_000);
        return tokenMetadata(t.token, t.expires);
      }),
    );
    const streams = Array.from({ length: 200 }, (_v, i) =>
      unix.watchEndpoints({ networkServiceNames: ["svc-fan"] }, { metadata: mds[i % 4]! }),
    );
    const got = new Array<number>(streams.length).fill(0);
    const readers = streams.map(async (s, i) => {
      try {
        for await (const ev of s) if (ev.networkServiceEndpoint!.name === "fan-1") got[i]!++;
      } catch {
        /* cancelled */
      }
    });
    await new Promise((r) => setTimeout(r, 300)); // streams established
    await tcp.registerEndpoint(
      endpoint({ name: "fan-1", networkServiceNames: ["svc-fan"], url: "tcp://198.18.3.1:5001" }),
    );
    await eventually(() => got.every((n) => n === 1), 5000, "every watcher to see fan-1");
    for (const s of streams) s.cancel();
    await Promise.all(readers);
    await tcp.unregisterEndpoint({ name: "fan-1" });
  });

  it("path metadata: the registry adds its segment and returns the path in the response header", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const md = new grpc.Metadata();
      md.set(
        "path",
        JSON.stringify({ Index: 0, PathSegments: [{ name: "nse-p", id: "id-0", token: "tok" }] }),
      );
      const { headers } = await c.unary(
        NetworkServiceEndpointRegistryService.register,
        endpoint({ name: "nse-p", url: "tcp://198.18.4.1:5001" }),
        { metadata: md },
      );
      const header = headers.get("path")[0];
      assert.equal(typeof header, "string");
      const path = parsePath(header as string);
      assert.equal(path.index, 0, "index restored to the caller's");
      assert.deepEqual(
        path.segments.map((s) => s.name),
        ["nse-p", "reg-test"],
      );
      assert.ok(path.segments[1]!.id.length > 0);

      const bad = new grpc.Metadata();
      bad.set("path", "{not json");
      await rejectsWith(
        c.unary(NetworkServiceEndpointRegistryService.register, endpoint({ name: "nse-p2" }), {
          metadata: bad,
        }),
        grpc.status.INVALID_ARGUMENT,
        "metadata path",
      );
      assert.equal((await tcp.findEndpoints({ name: "nse-p2" })).length, 0);
      await tcp.unregisterEndpoint({ name: "nse-p" });
    } finally {
      c.close();
    }
  });

  it("path_ids: [caller, registry] on Register and in Find; the path header only for a caller that sent a path", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const caller = generatedIdentity("nse-ids").spiffeId;
      // A plain client: no path metadata, no header back; path_ids it sends are not kept.
      const plain = await c.unary(
        upstream.nseRegister,
        endpoint({
          name: "nse-ids",
          url: "tcp://198.18.7.1:5001",
          pathIds: ["spiffe://nsm-ts.local/victim"],
        }),
        { metadata: await callerMd("nse-ids") },
      );
      assert.deepEqual(plain.response.pathIds, [caller, registryId]);
      assert.deepEqual(plain.headers.get("path"), []);

      // Upstream's client (grpcmetadata): its first call sends an empty path, and reads the path back.
      const md = await callerMd("nse-ids");
      md.set("path", JSON.stringify({ Index: 0, PathSegments: null }));
      const first = await c.unary(upstream.nseRegister, plain.response, { metadata: md });
      assert.deepEqual(first.response.pathIds, [caller, registryId]);
      const header = first.headers.get("path")[0] as string;
      assert.equal(parsePath(header).index, 0, "the caller's index");
      assert.deepEqual(subsOf(header), [caller, registryId], "segment tokens: the caller's, then ours");

      // Find returns the stored path_ids; it neither reads a path nor sends one back (even a malformed one).
      const findMd = new grpc.Metadata();
      findMd.set("path", "{not json");
      const found = c.serverStream(
        upstream.nseFind,
        { networkServiceEndpoint: endpoint({ name: "nse-ids" }), watch: false },
        { timeoutMs: 5000, metadata: findMd },
      );
      const list = await collect(found);
      assert.deepEqual(
        list.map((r) => r.networkServiceEndpoint!.pathIds),
        [[caller, registryId]],
      );
      assert.deepEqual((await found.headers).get("path"), []);

      // NetworkService the same; a caller without a token gets "" in its place.
      const ns = await c.unary(upstream.nsRegister, service({ name: "svc-ids" }), {
        metadata: await callerMd("nse-ids"),
      });
      assert.deepEqual(ns.response.pathIds, [caller, registryId]);
      const anon = await c.unary(upstream.nsRegister, service({ name: "svc-anon" }));
      assert.deepEqual(anon.response.pathIds, ["", registryId]);

      await c.unary(upstream.nseUnregister, endpoint({ name: "nse-ids" }), {
        metadata: await callerMd("nse-ids"),
      });
      await c.unary(upstream.nsUnregister, service({ name: "svc-ids" }), {
        metadata: await callerMd("nse-ids"),
      });
      await c.unary(upstream.nsUnregister, service({ name: "svc-anon" }));
    } finally {
      c.close();
    }
  });

  it("expiration_time = min(requested, the caller's token expiry, default period)", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const t0 = Date.now();
      const capped = await c.unary(
        upstream.nseRegister,
        endpoint({
          name: "nse-tok",
          url: "tcp://198.18.7.2:5001",
          expirationTime: msToTimestamp(t0 + 3_600_000),
        }),
        { metadata: await callerMd("nse-tok", 20_000) },
      );
      const exp = timestampToMs(capped.response.expirationTime!) - t0;
      assert.ok(exp <= 20_100 && exp >= 18_500, `expiration ${exp} ms from now, want the token's ~20 s`);
      // A shorter request is kept as it is.
      const shorter = await c.unary(
        upstream.nseRegister,
        { ...capped.response, expirationTime: msToTimestamp(t0 + 10_000) },
        { metadata: await callerMd("nse-tok", 20_000) },
      );
      assert.equal(timestampToMs(shorter.response.expirationTime!), t0 + 10_000);
      await c.unary(upstream.nseUnregister, endpoint({ name: "nse-tok" }), {
        metadata: await callerMd("nse-tok"),
      });
    } finally {
      c.close();
    }
  });

  it("watch: all current matches first; deleted events carry the whole stored record (unregister, expiry, NS)", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    const watches: { stop(): Promise<void> }[] = [];
    try {
      const a = (
        await c.unary(
          upstream.nseRegister,
          endpoint({
            name: "del-a",
            networkServiceNames: ["svc-del"],
            networkServiceLabels: { "svc-del": { labels: { app: "a" } } },
            url: "tcp://198.18.8.1:5001",
          }),
        )
      ).response;
      const b = (
        await c.unary(
          upstream.nseRegister,
          endpoint({ name: "del-b", networkServiceNames: ["svc-del"], url: "tcp://198.18.8.2:5001" }),
        )
      ).response;
      const ns = (await c.unary(upstream.nsRegister, service({ name: "svc-del" }))).response;
      const nses = reader(
        c.serverStream(upstream.nseFind, {
          networkServiceEndpoint: endpoint({ networkServiceNames: ["svc-del"] }),
          watch: true,
        }),
        (r) => r.networkServiceEndpoint!.name,
      );
      watches.push(nses);
      const nss = reader(
        c.serverStream(upstream.nsFind, { networkService: service({ name: "svc-del" }), watch: true }),
        (r) => r.networkService!.name,
      );
      watches.push(nss);
      await eventually(() => nses.events.length === 2 && nss.events.length === 1, 3000, "current matches");
      assert.deepEqual([...nses.events].sort(), ["+del-a", "+del-b"]);
      assert.deepEqual(nss.events, ["+svc-del"]);

      await c.unary(upstream.nseUnregister, endpoint({ name: "del-a" }));
      const short = (
        await c.unary(upstream.nseRegister, {
          ...b,
          expirationTime: msToTimestamp(Date.now() + 600),
        })
      ).response;
      await c.unary(upstream.nsUnregister, service({ name: "svc-del" }));
      await eventually(
        () => nses.events.includes("-del-b") && nss.events.length === 2,
        4000,
        "deleted events",
      );
      assert.deepEqual(nses.events.slice(2), ["-del-a", "+del-b", "-del-b"]);
      assert.deepEqual(nses.got[2]!.networkServiceEndpoint, a, "unregister: the stored record");
      assert.deepEqual(nses.got[4]!.networkServiceEndpoint, short, "expiry: the stored record");
      assert.deepEqual(nss.events, ["+svc-del", "-svc-del"]);
      assert.deepEqual(nss.got[1]!.networkService, ns);
      assert.equal(nss.got[1]!.networkService.payload, "IP");
    } finally {
      await Promise.all(watches.map((w) => w.stop()));
      c.close();
    }
  });

  it("Unregister of a name nobody holds (or the empty name): OK, empty, nothing announced", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    const watches: { stop(): Promise<void> }[] = [];
    try {
      const nses = reader(
        c.serverStream(upstream.nseFind, { networkServiceEndpoint: endpoint({}), watch: true }),
        (r) => r.networkServiceEndpoint!.name,
      );
      watches.push(nses);
      const nss = reader(
        c.serverStream(upstream.nsFind, { networkService: service({}), watch: true }),
        (r) => r.networkService!.name,
      );
      watches.push(nss);
      await new Promise((r) => setTimeout(r, 200)); // both watches sent their current matches
      const before = [nses.events.length, nss.events.length];
      for (const name of ["never-registered", ""]) {
        const e = await c.unary(upstream.nseUnregister, endpoint({ name }), {
          metadata: await callerMd("someone"),
        });
        assert.deepEqual(e.response, {});
        assert.deepEqual((await c.unary(upstream.nsUnregister, service({ name }))).response, {});
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual([nses.events.length, nss.events.length], before, "no events");
    } finally {
      await Promise.all(watches.map((w) => w.stop()));
      c.close();
    }
  });

  it("an NSE may name a NetworkService nobody registered: stored, found by it, no service created", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const r = await c.unary(
        upstream.nseRegister,
        endpoint({
          name: "nse-orphan",
          networkServiceNames: ["svc-unregistered"],
          url: "tcp://198.18.9.1:5001",
        }),
      );
      assert.equal(r.response.name, "nse-orphan");
      const found = await collect(
        c.serverStream(
          upstream.nseFind,
          { networkServiceEndpoint: endpoint({ networkServiceNames: ["svc-unregistered"] }), watch: false },
          { timeoutMs: 5000 },
        ),
      );
      assert.deepEqual(
        found.map((f) => f.networkServiceEndpoint!.name),
        ["nse-orphan"],
      );
      const services = await collect(
        c.serverStream(
          upstream.nsFind,
          { networkService: service({ name: "svc-unregistered" }), watch: false },
          { timeoutMs: 5000 },
        ),
      );
      assert.deepEqual(services, []);
      await c.unary(upstream.nseUnregister, endpoint({ name: "nse-orphan" }));
    } finally {
      c.close();
    }
  });

  it("bad input: INVALID_ARGUMENT naming the field, nothing stored", async () => {
    const I = grpc.status.INVALID_ARGUMENT;
    await rejectsWith(tcp.registerEndpoint(endpoint({ name: "" })), I, "network_service_endpoint.name");
    await rejectsWith(
      tcp.registerEndpoint(endpoint({ name: "n".repeat(254) })),
      I,
      "network_service_endpoint.name",
    );
    await rejectsWith(
      tcp.registerEndpoint(endpoint({ name: "bad-url", url: "http://198.18.0.1" })),
      I,
      "network_service_endpoint.url",
    );
    await rejectsWith(
      tcp.registerEndpoint(endpoint({ name: "bad-url", url: "tcp://198.18.0.1" })),
      I,
      "network_service_endpoint.url",
    );
    await rejectsWith(
      tcp.registerEndpoint(
        endpoint({ name: "bad-ts", expirationTime: { seconds: 1, nanos: 1_000_000_000 } }),
      ),
      I,
      "network_service_endpoint.expiration_time",
    );
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    await rejectsWith(
      tcp.registerEndpoint(
        endpoint({ name: "bad-labels", networkServiceNames: ["s"], networkServiceLabels: { s: { labels } } }),
      ),
      I,
      "network_service_endpoint.network_service_labels[s].labels",
    );
    await rejectsWith(
      tcp.registerService({ name: "", payload: "", matches: [], pathIds: [] }),
      I,
      "network_service.name",
    );
    await rejectsWith(
      tcp.registerService({ name: "bad-payload", payload: "MPLS", matches: [], pathIds: [] }),
      I,
      "network_service.payload",
    );
    for (const name of ["bad-url", "bad-ts", "bad-labels"])
      assert.equal((await tcp.findEndpoints({ name })).length, 0, `${name} not stored`);
    assert.equal((await tcp.findServices({ name: "bad-payload" })).length, 0);
  });

  it("a malformed or truncated protobuf frame is refused and the server keeps serving", async () => {
    const c = new GrpcClient(`unix://${sock}`);
    try {
      const raw = { ...NetworkServiceEndpointRegistryService.register, requestSerialize: (b: Buffer) => b };
      // field 1 (name), length 5, but only one byte follows; then a field with wire type 7 (invalid).
      for (const frame of [
        Buffer.from([0x0a, 0x05, 0x61]),
        Buffer.from([0x0f, 0x01]),
        Buffer.alloc(64, 0xff),
      ]) {
        await assert.rejects(c.unary(raw, frame), (e) => statusOf(e).code !== grpc.status.OK);
      }
      const ok = await tcp.registerEndpoint(
        endpoint({ name: "after-garbage", url: "tcp://198.18.5.1:5001" }),
      );
      assert.equal(ok.name, "after-garbage");
      await tcp.unregisterEndpoint({ name: "after-garbage" });
    } finally {
      c.close();
    }
  });

  it("refuses to start on a unix socket another registry is serving", async () => {
    await assert.rejects(
      startComponent(
        ["registry", "--store", "memory", "--listen-on", `unix://${sock}`],
        "registry serving",
        {},
        10_000,
      ),
      /another server is listening there/,
    );
  });

  it("survives kill -9: services and unexpired endpoints come back, expired ones do not", async () => {
    await tcp.registerService({ name: "durable-svc", payload: "ETHERNET", matches: [], pathIds: [] });
    const long = await tcp.registerEndpoint(
      endpoint({ name: "durable-nse", networkServiceNames: ["durable-svc"], url: "tcp://198.18.6.1:5001" }),
    );
    await tcp.registerEndpoint(
      endpoint({
        name: "short-nse",
        networkServiceNames: ["durable-svc"],
        url: "tcp://198.18.6.2:5001",
        expirationTime: msToTimestamp(Date.now() + 1000),
      }),
    );
    await reg.kill();
    assert.ok(existsSync(sock), "kill -9 leaves the socket file behind");
    await new Promise((r) => setTimeout(r, 1200)); // short-nse expires while the registry is down
    reg = await startComponent(args, "registry serving");
    tcp.close();
    unix.close();
    tcp = new RegistryClient(reg.urls.find((u) => u.startsWith("tcp://"))!);
    unix = new RegistryClient(`unix://${sock}`);
    assert.deepEqual(
      (await unix.findServices({ name: "durable-svc" })).map((s) => s.payload),
      ["ETHERNET"],
    );
    const back = await unix.findEndpoints({ networkServiceNames: ["durable-svc"] });
    assert.deepEqual(
      back.map((n) => n.name),
      ["durable-nse"],
    );
    assert.deepEqual(back[0]!.initialRegistrationTime, long.initialRegistrationTime);
    assert.deepEqual(back[0]!.expirationTime, long.expirationTime);
  });

  it("SIGTERM stops cleanly and removes its socket", async () => {
    const code = await reg.stop();
    assert.equal(code, 0);
    assert.equal(existsSync(sock), false);
  });
});

describe("registry process with short-lived tokens of its own", () => {
  let short: Component;
  before(async () => {
    short = await startComponent(
      [
        "registry",
        "--name",
        "reg-short",
        "--store",
        "memory",
        "--listen-on",
        "tcp://127.0.0.1:0",
        "--max-token-lifetime",
        "20s",
      ],
      "registry serving",
    );
  });
  after(async () => {
    await short?.stop();
  });

  it("expiration_time is capped by the registry's own token (20 s), under the 1 min default", async () => {
    const c = new GrpcClient(short.urls[0]!);
    try {
      const t0 = Date.now();
      const r = await c.unary(
        upstream.nseRegister,
        endpoint({ name: "nse-own", url: "tcp://198.18.9.2:5001" }),
        { metadata: await callerMd("nse-own") },
      );
      const exp = timestampToMs(r.response.expirationTime!) - t0;
      // Our token may be reused while it has 90% of its life left: 18–20 s.
      assert.ok(
        exp <= 20_100 && exp >= 17_000,
        `expiration ${exp} ms from now, want the registry token's ~20 s`,
      );
    } finally {
      c.close();
    }
  });
});
