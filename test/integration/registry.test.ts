// The registry as a real process, over TCP and a unix socket: register/find/watch/expire/unregister,
// query semantics, path metadata, bad input, malformed frames, and survival of kill -9.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
} from "../../src/api/registry.js";
import { GrpcClient } from "../../src/core/client.js";
import { msToTimestamp, timestampToMs } from "../../src/core/time.js";
import { RegistryClient, endpoint } from "../../src/registry/client.js";
import { parsePath } from "../../src/registry/updatepath.js";
import { generatedIdentity } from "../../src/security/identity.js";
import { generateToken, tokenMetadata } from "../../src/security/token.js";
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
