// The `memory` elements' wire semantics, as upstream's registry memory: Find sends every current match, then
// (watch=true) every change in order — refreshes as deleted=false, Unregister and expiry as deleted=true with
// the whole stored record; Unregister of a name nobody holds is a no-op; an NSE may name a NetworkService nobody
// registered (nothing refuses it and nothing creates the service).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  NetworkServiceEndpointResponse,
  NetworkServiceResponse,
  type NetworkServiceEndpoint,
} from "../api/registry.js";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { asMessage, type FindStream } from "../core/registrychain.js";
import { msToTimestamp } from "../core/time.js";
import { endpoint, service } from "./client.js";
import { EndpointTable, ServiceTable, memoryNSEServer, memoryNSServer } from "./memory.js";
import { MemoryStore } from "./store/store.js";
import { nsRegistryChain, nseRegistryChain } from "./types.js";

const ctx = (): CallContext => CallContext.background(rootLogger);

function endpointsChain(store = new MemoryStore()) {
  const table = new EndpointTable(store, rootLogger);
  const chain = nseRegistryChain([memoryNSEServer(table)]);
  return { table, chain };
}

/** A watch (or a plain Find) whose responses are collected as "+name" / "-name", with the messages. */
function watchNSE(
  chain: ReturnType<typeof endpointsChain>["chain"],
  query: Partial<NetworkServiceEndpoint>,
  watch = true,
) {
  const abort = new AbortController();
  const got: NetworkServiceEndpointResponse[] = [];
  const stream: FindStream<NetworkServiceEndpointResponse> = {
    send: (r) => got.push(asMessage(r, NetworkServiceEndpointResponse)),
  };
  const c = new CallContext(rootLogger, abort.signal);
  const done = chain.find({ networkServiceEndpoint: endpoint(query), watch }, c, stream);
  const events = (): string[] => got.map((r) => `${r.deleted ? "-" : "+"}${r.networkServiceEndpoint!.name}`);
  return { got, events, done, stop: () => abort.abort() };
}

const nse = (name: string, svc = "svc", p: Partial<NetworkServiceEndpoint> = {}) =>
  endpoint({ name, networkServiceNames: [svc], url: `tcp://198.18.0.${name.length}:5001`, ...p });

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("memory NSE Find", () => {
  it("watch=false: every current match, then the call ends", async () => {
    const { chain } = endpointsChain();
    await chain.register(nse("a"), ctx());
    await chain.register(nse("b"), ctx());
    await chain.register(nse("c", "other"), ctx());
    const w = watchNSE(chain, { networkServiceNames: ["svc"] }, false);
    await w.done;
    assert.deepEqual(w.events().sort(), ["+a", "+b"]);
  });

  it("watch=true: every current match first, then changes in order; refresh +, unregister and expiry −", async () => {
    const { chain, table } = endpointsChain();
    await chain.register(nse("a"), ctx());
    await chain.register(nse("b"), ctx());
    const w = watchNSE(chain, { networkServiceNames: ["svc"] });
    assert.deepEqual(w.events().sort(), ["+a", "+b"], "the current matches are sent before anything else");
    await chain.register(nse("c"), ctx());
    await chain.register(nse("a"), ctx()); // refresh
    await chain.register(nse("x", "other"), ctx()); // not matching
    await chain.unregister(endpoint({ name: "b" }), ctx());
    await chain.register(nse("short", "svc", { expirationTime: msToTimestamp(Date.now() + 200) }), ctx());
    await until(() => w.events().includes("-short"), 3000, "the expiry event");
    assert.deepEqual(w.events().slice(2), ["+c", "+a", "-b", "+short", "-short"]);
    w.stop();
    await w.done;
    table.close();
  });

  it("a deleted event carries the whole stored record, not the Unregister request", async () => {
    const { chain, table } = endpointsChain();
    const stored = await chain.register(
      nse("d", "svc", {
        networkServiceLabels: { svc: { labels: { app: "x" } } },
        pathIds: ["spiffe://t/nse", "spiffe://t/registry"],
        expirationTime: msToTimestamp(Date.now() + 60_000),
      }),
      ctx(),
    );
    assert.ok(stored.initialRegistrationTime);
    const w = watchNSE(chain, { networkServiceNames: ["svc"] });
    await chain.unregister(endpoint({ name: "d" }), ctx());
    assert.equal(w.got.length, 2);
    assert.equal(w.got[1]!.deleted, true);
    assert.deepEqual(w.got[1]!.networkServiceEndpoint, stored);

    const exp = await chain.register(
      nse("e", "svc", { expirationTime: msToTimestamp(Date.now() + 150) }),
      ctx(),
    );
    await until(() => w.got.length === 4, 3000, "the expiry event");
    assert.equal(w.got[3]!.deleted, true);
    assert.deepEqual(w.got[3]!.networkServiceEndpoint, exp, "expiry: the stored record as well");
    w.stop();
    await w.done;
    table.close();
  });

  it("a Register whose write is under way when the watch starts is sent once, after the current matches", async () => {
    let release!: () => void;
    const store = new MemoryStore();
    const slow = new Promise<void>((r) => (release = r));
    const { chain, table } = endpointsChain(store);
    await chain.register(nse("a"), ctx());
    store.putEndpoint = () => slow;
    const writing = chain.register(nse("b"), ctx());
    const w = watchNSE(chain, { networkServiceNames: ["svc"] });
    assert.deepEqual(w.events(), ["+a"]);
    release();
    await writing;
    assert.deepEqual(w.events(), ["+a", "+b"]);
    w.stop();
    await w.done;
    table.close();
  });

  it("Unregister of a name nobody holds: no error, no event", async () => {
    const { chain, table } = endpointsChain();
    const w = watchNSE(chain, {});
    await chain.unregister(endpoint({ name: "never" }), ctx());
    await chain.unregister(endpoint({ name: "" }), ctx());
    assert.deepEqual(w.events(), []);
    w.stop();
    await w.done;
    table.close();
  });
});

describe("memory: an NSE and its NetworkServices", () => {
  it("an NSE naming an unregistered NetworkService is stored and found by it; no service is created", async () => {
    const { chain, table } = endpointsChain();
    const services = new ServiceTable(new MemoryStore());
    const ns = nsRegistryChain([memoryNSServer(services)]);
    await chain.register(nse("lonely", "nobody-registered-this"), ctx());
    const w = watchNSE(chain, { networkServiceNames: ["nobody-registered-this"] }, false);
    await w.done;
    assert.deepEqual(w.events(), ["+lonely"]);
    const found: NetworkServiceResponse[] = [];
    await ns.find({ networkService: service({}), watch: false }, ctx(), {
      send: (r) => found.push(asMessage(r, NetworkServiceResponse)),
    });
    assert.deepEqual(found, []);
    table.close();
  });
});

describe("memory NS Find", () => {
  it("watch=true: current matches, then changes; the deleted event carries the stored service", async () => {
    const services = new ServiceTable(new MemoryStore());
    const chain = nsRegistryChain([memoryNSServer(services)]);
    const a = await chain.register(service({ name: "a", payload: "IP", pathIds: ["spiffe://t/a"] }), ctx());
    const abort = new AbortController();
    const got: NetworkServiceResponse[] = [];
    const done = chain.find(
      { networkService: service({}), watch: true },
      new CallContext(rootLogger, abort.signal),
      { send: (r) => got.push(asMessage(r, NetworkServiceResponse)) },
    );
    await chain.register(service({ name: "b", payload: "ETHERNET" }), ctx());
    await chain.unregister(service({ name: "a" }), ctx());
    await chain.unregister(service({ name: "never" }), ctx());
    assert.deepEqual(
      got.map((r) => `${r.deleted ? "-" : "+"}${r.networkService!.name}`),
      ["+a", "+b", "-a"],
    );
    assert.deepEqual(got[2]!.networkService, a);
    abort.abort();
    await done;
  });
});
