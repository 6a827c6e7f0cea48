// K8sStore against a real kube-apiserver (test/helpers/apiserver.ts) with the CRDs of deploy/k8s/apps/crds:
// records round-trip, the stored spec is upstream's JSON, replicas see each other's writes and kubectl's
// deletes (also across an apiserver outage), and a registry restarted on the store finds what it had.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import type { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";
import { startRegistry, type RunningRegistry } from "../../components/registry.js";
import { createSecurity } from "../../components/security.js";
import { componentLogger } from "../../core/log.js";
import { StatusError } from "../../core/errors.js";
import { eventually } from "../../../test/helpers/proc.js";
import { startApiserver, type Apiserver } from "../../../test/helpers/apiserver.js";
import { RegistryClient, endpoint } from "../client.js";
import { K8sStore } from "./k8s.js";
import type { StoreChange } from "./store.js";

const crds = join(import.meta.dirname, "../../../deploy/k8s/apps/crds");
const log = componentLogger("k8s-store-test");

const fullService = (name: string): NetworkService => ({
  name,
  payload: "ETHERNET",
  matches: [
    {
      sourceSelector: { app: "client" },
      routes: [
        { destinationSelector: { app: "gw", zone: "a" }, weight: 3 },
        { destinationSelector: { app: "gw" }, weight: 0 },
      ],
      fallthrough: true,
      metadata: { labels: { tier: "edge" } },
    },
    { sourceSelector: {}, routes: [], fallthrough: false, metadata: undefined },
  ],
  pathIds: ["spiffe://test/nse", "spiffe://test/registry"],
});

const fullEndpoint = (name: string, services = ["svc-a", "svc-b"]): NetworkServiceEndpoint => ({
  name,
  networkServiceNames: services,
  networkServiceLabels: { "svc-a": { labels: { app: "gw", zone: "a" } }, "svc-b": { labels: {} } },
  url: "tcp://198.18.0.5:5001",
  expirationTime: { seconds: 4_102_444_800, nanos: 123_000_000 },
  initialRegistrationTime: { seconds: 1_700_000_000, nanos: 7 },
  pathIds: ["spiffe://test/nse", "spiffe://test/registry"],
});

describe("K8sStore", { timeout: 120_000 }, () => {
  let api: Apiserver;
  let namespaces = 0;
  const stores: K8sStore[] = [];

  /** A namespace of its own for each test. */
  const namespace = async (): Promise<string> => {
    const ns = `t${++namespaces}`;
    await api.kubectl("create", "namespace", ns);
    return ns;
  };
  const open = (namespace: string, kubeconfig = api.kubeconfig): K8sStore => {
    const s = new K8sStore({ namespace, kubeconfig, log });
    stores.push(s);
    return s;
  };
  const raw = async (ns: string, kind: string, name: string): Promise<Record<string, unknown>> =>
    JSON.parse(await api.kubectl("-n", ns, "get", kind, name, "-o", "json")) as Record<string, unknown>;

  before(async () => {
    api = await startApiserver();
    await api.kubectl("apply", "-k", crds);
    await api.kubectl(
      "wait",
      "--for=condition=established",
      "crd/networkservices.networkservicemesh.io",
      "crd/networkserviceendpoints.networkservicemesh.io",
    );
  });
  after(async () => {
    for (const s of stores) await s.close();
    await api?.close();
  });

  it("the CRDs give upstream's kinds and short names: kubectl get nse,netsvc", async () => {
    const out = await api.kubectl("api-resources", "--api-group=networkservicemesh.io", "--no-headers");
    const rows = out
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows.map((r) => [r[0], r[1], r[2], r[3], r[4]]).sort(), [
      ["networkserviceendpoints", "nse,nses", "networkservicemesh.io/v1", "true", "NetworkServiceEndpoint"],
      ["networkservices", "netsvc,netsvcs", "networkservicemesh.io/v1", "true", "NetworkService"],
    ]);
    const ns = await namespace();
    await open(ns).putEndpoint(fullEndpoint("nse-1"));
    const table = await api.kubectl("-n", ns, "get", "nse,netsvc");
    assert.match(table, /networkserviceendpoint\.networkservicemesh\.io\/nse-1\s+tcp:\/\/198\.18\.0\.5:5001/);
  });

  it("round-trips every field of NetworkService and NetworkServiceEndpoint, and replaces", async () => {
    const ns = await namespace();
    const a = open(ns);
    await a.putService(fullService("svc-a"));
    await a.putEndpoint(fullEndpoint("nse-a"));
    const b = open(ns);
    assert.deepEqual(await b.loadServices(), [fullService("svc-a")]);
    assert.deepEqual(await b.loadEndpoints(), [fullEndpoint("nse-a")]);

    const changed: NetworkServiceEndpoint = { ...fullEndpoint("nse-a", ["svc-c"]), url: "unix:///x.sock" };
    await a.putEndpoint(changed);
    await a.putService({ ...fullService("svc-a"), payload: "IP", matches: [] });
    assert.deepEqual(await open(ns).loadEndpoints(), [changed]);
    assert.deepEqual((await open(ns).loadServices())[0]!.payload, "IP");
  });

  it("stores the spec under upstream's JSON field names (Go encoding/json of the registry proto)", async () => {
    const ns = await namespace();
    const s = open(ns);
    const nse = fullEndpoint("nse-raw");
    await s.putEndpoint(nse);
    await s.putService(fullService("svc-raw"));
    const obj = await raw(ns, "nse", "nse-raw");
    assert.equal(obj.apiVersion, "networkservicemesh.io/v1");
    assert.equal(obj.kind, "NetworkServiceEndpoint");
    assert.deepEqual(obj.spec, {
      name: "nse-raw",
      network_service_names: ["svc-a", "svc-b"],
      network_service_labels: { "svc-a": { labels: { app: "gw", zone: "a" } }, "svc-b": {} },
      url: "tcp://198.18.0.5:5001",
      expiration_time: { seconds: 4_102_444_800, nanos: 123_000_000 },
      initial_registration_time: { seconds: 1_700_000_000, nanos: 7 },
      path_ids: ["spiffe://test/nse", "spiffe://test/registry"],
    });
    assert.deepEqual((await raw(ns, "netsvc", "svc-raw")).spec, {
      name: "svc-raw",
      payload: "ETHERNET",
      matches: [
        {
          source_selector: { app: "client" },
          routes: [
            { destination_selector: { app: "gw", zone: "a" }, weight: 3 },
            { destination_selector: { app: "gw" } },
          ],
          fallthrough: true,
          metadata: { labels: { tier: "edge" } },
        },
        {},
      ],
      path_ids: ["spiffe://test/nse", "spiffe://test/registry"],
    });
  });

  it("reads objects written by hand or by upstream: spec.name may be missing, int64 may be quoted", async () => {
    const ns = await namespace();
    const tmp = mkdtempSync(join(tmpdir(), "nsm-k8s-obj-"));
    const file = join(tmp, "nse.json");
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: "networkservicemesh.io/v1",
        kind: "NetworkServiceEndpoint",
        metadata: { name: "by-hand", namespace: ns },
        spec: {
          network_service_names: ["svc"],
          url: "tcp://10.0.0.1:5001",
          expiration_time: { seconds: "4102444800" },
        },
      }),
    );
    try {
      await api.kubectl("apply", "-f", file);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    assert.deepEqual(await open(ns).loadEndpoints(), [
      endpoint({
        name: "by-hand",
        networkServiceNames: ["svc"],
        url: "tcp://10.0.0.1:5001",
        expirationTime: { seconds: 4102444800, nanos: 0 },
      }),
    ]);
  });

  it("a second instance sees the first one's writes and deletes (and kubectl's), never its own", async () => {
    const ns = await namespace();
    const a = open(ns);
    const b = open(ns);
    await b.loadServices();
    await b.loadEndpoints();
    const seen: StoreChange[] = [];
    b.subscribe((c) => seen.push(c));
    const names = (): string[] => seen.map((c) => `${c.value ? "+" : "-"}${c.kind}/${c.name}`);

    await b.putEndpoint(fullEndpoint("nse-b")); // b's own: never reported to b
    await a.putService(fullService("svc-1"));
    await a.putEndpoint(fullEndpoint("nse-1"));
    await eventually(() => seen.length >= 2, 10_000, "a's writes at b");
    // The two kinds are two watches: no order between them.
    assert.deepEqual(
      seen.find((c) => c.kind === "service"),
      { kind: "service", name: "svc-1", value: fullService("svc-1") },
    );
    assert.deepEqual(
      seen.find((c) => c.kind === "endpoint"),
      { kind: "endpoint", name: "nse-1", value: fullEndpoint("nse-1") },
    );

    await a.deleteEndpoint("nse-1");
    await a.deleteService("svc-1");
    await b.deleteEndpoint("nse-b");
    await a.putEndpoint(fullEndpoint("nse-2"));
    await api.kubectl("-n", ns, "delete", "nse", "nse-2");
    await eventually(() => seen.length >= 6, 10_000, "deletes at b");
    const of = (kind: string): string[] => names().filter((n) => n.includes(kind));
    assert.deepEqual(of("service/"), ["+service/svc-1", "-service/svc-1"]);
    assert.deepEqual(of("endpoint/"), [
      "+endpoint/nse-1",
      "-endpoint/nse-1",
      "+endpoint/nse-2",
      "-endpoint/nse-2",
    ]);
    // Nothing more comes (b's own put and delete of nse-b, in particular).
    await a.putService(fullService("svc-end"));
    await eventually(() => names().includes("+service/svc-end"), 10_000, "the last write at b");
    assert.equal(seen.length, 7);
  });

  it("replaces what changed under it (409) and keeps labels kubectl set", async () => {
    const ns = await namespace();
    const a = open(ns);
    const b = open(ns);
    await a.putEndpoint(fullEndpoint("nse-c"));
    await b.loadEndpoints();
    await a.putEndpoint({ ...fullEndpoint("nse-c"), url: "tcp://198.18.0.6:5001" }); // b's version is stale now
    await api.kubectl("-n", ns, "label", "nse", "nse-c", "team=blue");
    await b.putEndpoint({ ...fullEndpoint("nse-c"), url: "tcp://198.18.0.7:5001" });
    const obj = await raw(ns, "nse", "nse-c");
    assert.equal((obj.spec as { url: string }).url, "tcp://198.18.0.7:5001");
    assert.deepEqual((obj.metadata as { labels?: unknown }).labels, { team: "blue" });
  });

  it("a new instance loads everything the last one stored", async () => {
    const ns = await namespace();
    const a = open(ns);
    for (let i = 0; i < 5; i++) {
      await a.putService(fullService(`svc-${i}`));
      await a.putEndpoint(fullEndpoint(`nse-${i}`));
    }
    await a.deleteEndpoint("nse-3");
    await a.close();
    const b = open(ns);
    const byName = (x: { name: string }, y: { name: string }): number => x.name.localeCompare(y.name);
    assert.deepEqual(
      (await b.loadServices()).sort(byName),
      [0, 1, 2, 3, 4].map((i) => fullService(`svc-${i}`)),
    );
    assert.deepEqual(
      (await b.loadEndpoints()).sort(byName),
      [0, 1, 2, 4].map((i) => fullEndpoint(`nse-${i}`)),
    );
  });

  it("deleting what is not there is fine", async () => {
    const s = open(await namespace());
    await s.deleteEndpoint("nope");
    await s.deleteService("nope");
    await s.deleteEndpoint("Not A Name"); // cannot exist: no call at all
  });

  it("a name Kubernetes cannot take is INVALID_ARGUMENT naming the field", async () => {
    const s = open(await namespace());
    for (const [put, field] of [
      [() => s.putEndpoint(fullEndpoint("NSE_1")), "NetworkServiceEndpoint.name"],
      [() => s.putService(fullService("my service")), "NetworkService.name"],
      [() => s.putEndpoint(fullEndpoint("x".repeat(254))), "NetworkServiceEndpoint.name"],
    ] as const)
      await assert.rejects(put, (err: unknown) => {
        assert.ok(err instanceof StatusError);
        assert.equal(err.code, status.INVALID_ARGUMENT);
        assert.ok(err.details.startsWith(`${field}: `), err.details);
        return true;
      });
  });

  it("the watch survives an apiserver outage and reports what changed meanwhile", async () => {
    const ns = await namespace();
    const second = await api.another();
    const a = open(ns); // through the first apiserver
    const b = open(ns, second.kubeconfig);
    await a.putEndpoint(fullEndpoint("stays"));
    await a.putEndpoint(fullEndpoint("goes"));
    await b.loadEndpoints();
    const seen: string[] = [];
    b.subscribe((c) => seen.push(`${c.value ? "+" : "-"}${c.name}`));
    await a.putEndpoint(fullEndpoint("before"));
    await eventually(() => seen.includes("+before"), 10_000, "a change before the outage");

    await second.kill();
    await a.deleteEndpoint("goes");
    await a.putEndpoint(fullEndpoint("during"));
    await second.start();
    await eventually(
      () => seen.includes("-goes") && seen.includes("+during"),
      20_000,
      "changes of the outage",
    );
    await a.putEndpoint(fullEndpoint("after"));
    await eventually(() => seen.includes("+after"), 10_000, "a change after the outage");
    assert.deepEqual(seen.filter((e) => e !== "+before" && e !== "+after").sort(), ["+during", "-goes"]);
    await b.close();
    await second.stop();
  });

  describe("under nsm registry", () => {
    const dir = mkdtempSync(join(tmpdir(), "nsm-k8s-registry-"));
    let n = 0;
    const start = (namespace: string): Promise<RunningRegistry> =>
      startRegistry({
        name: "registry-k8s-test",
        listenOn: [`unix://${join(dir, `registry-${++n}.sock`)}`],
        store: "k8s",
        namespace,
        kubeconfig: api.kubeconfig,
        expirePeriodMs: 60_000,
        security: createSecurity({ name: "registry-k8s-test", insecure: true }),
      });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it("a restarted registry finds the NSE registered before; a replica follows, kubectl delete reaches watchers", async () => {
      const ns = await namespace();
      let first = await start(ns);
      let client = new RegistryClient(first.urls[0]!);
      try {
        await client.registerEndpoint(
          endpoint({ name: "nse-e2e", networkServiceNames: ["svc"], url: "tcp://198.18.0.9:5001" }),
        );
        await assert.rejects(
          client.registerEndpoint(
            endpoint({ name: "NSE_E2E", networkServiceNames: ["svc"], url: "tcp://198.18.0.9:5001" }),
          ),
          (err: { code?: number; details?: string }) =>
            err.code === status.INVALID_ARGUMENT && /NetworkServiceEndpoint\.name/.test(err.details ?? ""),
        );
        client.close();
        await first.stop();

        first = await start(ns);
        client = new RegistryClient(first.urls[0]!);
        const found = await client.findEndpoints({ name: "nse-e2e" });
        assert.equal(found.length, 1);
        assert.equal(found[0]!.url, "tcp://198.18.0.9:5001");
        assert.deepEqual(found[0]!.networkServiceNames, ["svc"]);

        // A replica on the same namespace: its working set follows the first one's writes.
        const replica = await start(ns);
        const rclient = new RegistryClient(replica.urls[0]!);
        try {
          await client.registerEndpoint(
            endpoint({ name: "nse-late", networkServiceNames: ["svc"], url: "tcp://198.18.0.10:5001" }),
          );
          await eventually(
            async () => (await rclient.findEndpoints({ name: "nse-late" })).length === 1,
            10_000,
            "replica sees nse-late",
          );

          const events: string[] = [];
          const watch = rclient.watchEndpoints({ networkServiceNames: ["svc"] });
          const reading = (async () => {
            try {
              for await (const ev of watch)
                events.push(`${ev.deleted ? "-" : "+"}${ev.networkServiceEndpoint!.name}`);
            } catch {
              // cancelled
            }
          })();
          await eventually(() => events.length >= 2, 10_000, "the watch's current records");
          await api.kubectl("-n", ns, "delete", "nse", "nse-e2e");
          await eventually(() => events.includes("-nse-e2e"), 10_000, "kubectl's delete at the watcher");
          await eventually(
            async () => (await client.findEndpoints({ name: "nse-e2e" })).length === 0,
            10_000,
            "gone at the first registry too",
          );
          watch.cancel();
          await reading;
        } finally {
          rclient.close();
          await replica.stop();
        }
      } finally {
        client.close();
        await first.stop();
      }
    });
  });
});
