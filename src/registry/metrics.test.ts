// Registry metrics: Register, Unregister, Find and watch counted by kind and code, one-shot calls timed, open
// watches in a gauge while they last, calls an nsmgr makes into its own chain left out, and the records a
// registry holds in gauges that follow its tables.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { metricValue } from "../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../observability/metrics/registry.js";
import { endpoint, service } from "./client.js";
import { validateNSE } from "./elements.js";
import { EndpointTable, ServiceTable, memoryNSEServer, memoryNSServer } from "./memory.js";
import { metricsNS, metricsNSE } from "./metrics.js";
import { trackRecords } from "./records.js";
import { MemoryStore } from "./store/store.js";
import { nsRegistryChain, nseRegistryChain } from "./types.js";

const calls = "nsm_registry_calls_total";
const ctx = (signal = new AbortController().signal): CallContext => new CallContext(rootLogger, signal);
const sink = { send: (): void => undefined };

function tables(): { endpoints: EndpointTable; services: ServiceTable } {
  const store = new MemoryStore();
  return { endpoints: new EndpointTable(store, rootLogger), services: new ServiceTable(store) };
}

describe("registry metrics element", () => {
  afterEach(disableMetrics);

  it("counts calls by kind, method and code, and times the one-shot ones", async () => {
    await enableMetrics();
    const t = tables();
    const nse = nseRegistryChain([metricsNSE("registry"), validateNSE(), memoryNSEServer(t.endpoints)]);
    const ns = nsRegistryChain([metricsNS("registry"), memoryNSServer(t.services)]);
    await ns.register(service({ name: "web" }), ctx());
    await nse.register(
      endpoint({ name: "nse-1", networkServiceNames: ["web"], url: "tcp://127.0.0.1:1" }),
      ctx(),
    );
    await assert.rejects(nse.register(endpoint({ name: "", url: "" }), ctx()));
    await nse.find({ networkServiceEndpoint: endpoint({}), watch: false }, ctx(), sink);
    await nse.unregister(endpoint({ name: "nse-1" }), ctx());
    const l = { component: "registry" };
    assert.equal(await metricValue(calls, { ...l, kind: "ns", method: "register", code: "OK" }), 1);
    assert.equal(await metricValue(calls, { ...l, kind: "nse", method: "register", code: "OK" }), 1);
    assert.equal(
      await metricValue(calls, { ...l, kind: "nse", method: "register", code: "INVALID_ARGUMENT" }),
      1,
    );
    assert.equal(await metricValue(calls, { ...l, kind: "nse", method: "find", code: "OK" }), 1);
    assert.equal(await metricValue(calls, { ...l, kind: "nse", method: "unregister", code: "OK" }), 1);
    assert.equal(
      await metricValue("nsm_registry_call_duration_seconds_count", {
        ...l,
        kind: "nse",
        method: "register",
      }),
      2,
    );
    t.endpoints.close();
  });

  it("holds a watch in the open-watches gauge until its caller goes, then counts it CANCELLED", async () => {
    await enableMetrics();
    const t = tables();
    const nse = nseRegistryChain([metricsNSE("nsmgr"), memoryNSEServer(t.endpoints)]);
    const abort = new AbortController();
    const watching = nse.find({ networkServiceEndpoint: endpoint({}), watch: true }, ctx(abort.signal), sink);
    await new Promise((r) => setImmediate(r));
    assert.equal(await metricValue("nsm_registry_watches", { component: "nsmgr", kind: "nse" }), 1);
    assert.equal(await metricValue(calls, { method: "watch" }), undefined, "counted when it ends");
    abort.abort();
    await watching;
    assert.equal(await metricValue("nsm_registry_watches", { component: "nsmgr", kind: "nse" }), 0);
    assert.equal(await metricValue(calls, { kind: "nse", method: "watch", code: "CANCELLED" }), 1);
    assert.equal(
      await metricValue("nsm_registry_call_duration_seconds_count", { method: "watch" }),
      undefined,
      "a watch's duration is its caller's choice: not timed",
    );
    t.endpoints.close();
  });

  it("leaves out calls a process makes into its own chain", async () => {
    await enableMetrics();
    const t = tables();
    const ns = nsRegistryChain([metricsNS("nsmgr"), memoryNSServer(t.services)]);
    const own = ctx();
    own.internal = true;
    await ns.find({ networkService: service({ name: "web" }), watch: false }, own, sink);
    assert.equal(await metricValue(calls), undefined);
    t.endpoints.close();
  });
});

describe("registry record gauges", () => {
  afterEach(disableMetrics);

  it("report the tables' sizes when scraped, and 0 once untracked", async () => {
    await enableMetrics();
    const t = tables();
    const untrack = trackRecords({
      component: "registry",
      services: () => t.services.size,
      endpoints: () => t.endpoints.size,
    });
    const nse = nseRegistryChain([memoryNSEServer(t.endpoints)]);
    const ns = nsRegistryChain([memoryNSServer(t.services)]);
    await ns.register(service({ name: "web" }), ctx());
    for (const n of ["a", "b"])
      await nse.register(
        endpoint({ name: n, networkServiceNames: ["web"], url: "tcp://127.0.0.1:1" }),
        ctx(),
      );
    assert.equal(await metricValue("nsm_registry_network_services", { component: "registry" }), 1);
    assert.equal(await metricValue("nsm_registry_network_service_endpoints", { component: "registry" }), 2);
    await nse.unregister(endpoint({ name: "a" }), ctx());
    assert.equal(await metricValue("nsm_registry_network_service_endpoints", { component: "registry" }), 1);
    untrack();
    assert.equal(await metricValue("nsm_registry_network_service_endpoints", { component: "registry" }), 0);
    t.endpoints.close();
  });
});
