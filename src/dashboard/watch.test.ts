// The dashboard's watches against real servers in this process: an nsmgr's MonitorConnections (kept when the
// nsmgr goes away, marked unreachable, replaced when it is back) and a registry's Find watch (records come
// and go; after a registry restart, what the new one lacks is dropped).
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Connection } from "../api/connection.js";
import { startRegistry, type RunningRegistry } from "../components/registry.js";
import { createSecurity } from "../components/security.js";
import { NsmServer } from "../core/grpc.js";
import { rootLogger } from "../core/log.js";
import { MonitorStore, monitorConnectionService } from "../networkservice/monitor/monitor.js";
import { endpoint, RegistryClient, service } from "../registry/client.js";
import { NsmgrWatch } from "./nsmgrwatch.js";
import { RegistryWatch } from "./registrywatch.js";

const security = createSecurity({ name: "operator", insecure: true });
const operator = "spiffe://nsm-ts.local/operator";
const log = rootLogger.child({ test: "dashboard-watch" });

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function connection(id: string): Connection {
  return Connection.fromPartial({
    id,
    networkService: "svc",
    path: {
      index: 1,
      pathSegments: [
        { name: "nsc", id: `${id}-nsc` },
        { name: "nsmgr-x", id },
      ],
    },
  });
}

async function monitorServer(url: string, store: MonitorStore): Promise<NsmServer> {
  const server = new NsmServer([monitorConnectionService(store, log, { seeAll: [operator] })]);
  await server.listen(url);
  return server;
}

after(() => security.close());

describe("dashboard watches", () => {
  it("an nsmgr's connections: learnt name, events, stale while it is away, replaced when it is back", async () => {
    // On TCP (here, and the registry's below) a stopped server ends its streams at once, as a dead
    // component's socket does.
    const store = new MonitorStore();
    store.update(connection("c1"));
    let server = await monitorServer("tcp://127.0.0.1:0", store);
    const url = server.urls[0]!;
    let changes = 0;
    const w = new NsmgrWatch(url, undefined, security, () => changes++, log);
    w.start();
    try {
      await until("the initial state", () => w.snapshot().status === "up");
      assert.deepEqual(
        w.snapshot().connections.map((c) => c.id),
        ["c1"],
      );
      assert.equal(w.name, "nsmgr-x", "named by its own path segment");
      store.update(connection("c2"));
      await until("c2", () => w.snapshot().connections.length === 2);
      store.delete(connection("c1"));
      await until("c1's DELETE", () => w.snapshot().connections.length === 1);

      await server.stop(0);
      await until("unreachable", () => w.snapshot().status === "unreachable");
      const away = w.snapshot();
      assert.deepEqual(
        away.connections.map((c) => c.id),
        ["c2"],
        "the last view is kept while the nsmgr is away",
      );
      assert.ok(away.error, "with why");

      // Back, without the connection (a restarted nsmgr starts empty): the new initial state replaces it.
      server = await monitorServer(url, new MonitorStore());
      await until("up again", () => w.snapshot().status === "up", 15_000);
      assert.deepEqual(w.snapshot().connections, []);
      assert.ok(changes > 0);
    } finally {
      w.stop();
      await server.stop(0);
    }
  });

  it("a registry's records: registrations and deletions, and a restarted registry's view replaces the old", async () => {
    const start = (at: string): Promise<RunningRegistry> =>
      startRegistry({ listenOn: [at], store: "memory", expirePeriodMs: 60_000, security });
    let registry = await start("tcp://127.0.0.1:0");
    const url = registry.urls[0]!;
    const client = new RegistryClient(url);
    const register = async (name: string): Promise<void> => {
      const md = await security.callMetadata(undefined, url, client.grpc);
      await client.registerEndpoint(
        endpoint({ name, networkServiceNames: ["svc"], url: "tcp://127.0.0.1:5001" }),
        { metadata: md },
      );
    };
    await register("nse-a");
    await client.registerService(service({ name: "svc", payload: "ETHERNET" }), {
      metadata: await security.callMetadata(undefined, url, client.grpc),
    });
    const w = new RegistryWatch(url, security, () => undefined, log);
    w.start();
    const names = (): string[] =>
      w
        .snapshot()
        .endpoints.map((e) => e.name)
        .sort();
    try {
      await until("up with nse-a", () => w.snapshot().status === "up" && names().length === 1);
      await register("nse-b");
      await until("nse-b", () => names().length === 2);
      assert.deepEqual(
        w.snapshot().services.map((s) => s.name),
        ["svc"],
      );

      await registry.stop();
      await until("unreachable", () => w.snapshot().status === "unreachable");
      assert.deepEqual(names(), ["nse-a", "nse-b"], "kept while the registry is away");
      registry = await start(url);
      await register("nse-c");
      await until("only what the new registry has", () => names().join() === "nse-c", 15_000);
      assert.equal(w.snapshot().status, "up");
    } finally {
      w.stop();
      client.close();
      await registry.stop();
    }
  });
});
