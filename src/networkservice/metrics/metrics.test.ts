// metrics: Requests and Closes counted by component, service, method and gRPC code, timed; service names
// capped; nothing recorded (and the chain untouched) while metrics are off; the live-connections gauge
// follows what begin holds, back to 0 after a Close.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { State, type Connection } from "../../api/connection.js";
import { chain, element } from "../../core/chain.js";
import { CallContext } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { rootLogger } from "../../core/log.js";
import { otherLabel } from "../../observability/metrics/labels.js";
import { metricValue } from "../../observability/metrics/read.js";
import { disableMetrics, enableMetrics } from "../../observability/metrics/registry.js";
import { beginServer } from "../begin/begin.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { trackConnections } from "./connections.js";
import { metricsServer } from "./metrics.js";

const ctx = (): CallContext => new CallContext(rootLogger, new AbortController().signal);
const conn = (id: string, networkService: string): Connection => ({
  ...emptyConnection(),
  id,
  networkService,
});
const calls = "nsm_networkservice_calls_total";
const duration = "nsm_networkservice_call_duration_seconds";

/** A chain ending in an element that refuses the service "denied". */
function hop(): ReturnType<typeof chain> {
  return chain([
    metricsServer("nsmgr"),
    element("refuse", (req, c, next) => {
      if (req.connection!.networkService === "denied")
        return Promise.reject(new StatusError(status.PERMISSION_DENIED, "no"));
      return next.request(req, c);
    }),
  ]);
}

describe("metrics element", () => {
  afterEach(disableMetrics);

  it("counts Requests and Closes by service, method and code, and times them", async () => {
    await enableMetrics();
    const h = hop();
    await h.request({ connection: conn("a", "web"), mechanismPreferences: [] }, ctx());
    await h.request({ connection: conn("a", "web"), mechanismPreferences: [] }, ctx());
    await h.close(conn("a", "web"), ctx());
    await assert.rejects(h.request({ connection: conn("b", "denied"), mechanismPreferences: [] }, ctx()));
    const base = { component: "nsmgr" };
    assert.equal(await metricValue(calls, { ...base, service: "web", method: "request", code: "OK" }), 2);
    assert.equal(await metricValue(calls, { ...base, service: "web", method: "close", code: "OK" }), 1);
    assert.equal(
      await metricValue(calls, { ...base, service: "denied", method: "request", code: "PERMISSION_DENIED" }),
      1,
    );
    assert.equal(await metricValue(`${duration}_count`, { ...base, service: "web", method: "request" }), 2);
    assert.equal(await metricValue(`${duration}_count`, { ...base, service: "denied" }), 1);
    assert.ok((await metricValue(`${duration}_sum`, base))! > 0);
  });

  it("an error that is not a gRPC status counts as INTERNAL, as the handlers answer it", async () => {
    await enableMetrics();
    const h = chain([
      metricsServer("forwarder"),
      element("boom", () => Promise.reject(new Error("kernel said no"))),
    ]);
    await assert.rejects(h.request({ connection: conn("c", "web"), mechanismPreferences: [] }, ctx()));
    assert.equal(await metricValue(calls, { component: "forwarder", code: "INTERNAL" }), 1);
  });

  it("caps the service names it reports", async () => {
    await enableMetrics();
    const h = hop();
    for (let i = 0; i < 205; i++)
      await h.request({ connection: conn(`x${i}`, `svc-${i}`), mechanismPreferences: [] }, ctx());
    assert.equal(await metricValue(calls, { service: "svc-199" }), 1);
    assert.equal(await metricValue(calls, { service: "svc-200" }), undefined);
    assert.equal(await metricValue(calls, { service: otherLabel }), 5);
  });

  it("records nothing while metrics are off, and passes the call through as is", async () => {
    const h = hop();
    const out = await h.request({ connection: conn("d", "web"), mechanismPreferences: [] }, ctx());
    assert.equal(out.id, "d");
    await assert.rejects(
      h.request({ connection: conn("e", "denied"), mechanismPreferences: [] }, ctx()),
      (err: StatusError) => err.code === status.PERMISSION_DENIED,
    );
    await enableMetrics();
    assert.equal(await metricValue(calls), undefined);
  });
});

describe("live connections gauge", () => {
  afterEach(disableMetrics);
  const live = "nsm_networkservice_connections";

  it("counts what begin holds by service and state, and goes back to 0 after Close", async () => {
    await enableMetrics();
    const begin = beginServer(rootLogger);
    const untrack = trackConnections({ component: "nse", connections: () => begin.connections() });
    const h = chain([metricsServer("nse"), begin]);
    await h.request({ connection: conn("a", "web"), mechanismPreferences: [] }, ctx());
    await h.request({ connection: conn("b", "web"), mechanismPreferences: [] }, ctx());
    await h.request({ connection: conn("c", "db"), mechanismPreferences: [] }, ctx());
    assert.equal(await metricValue(live, { component: "nse", service: "web", state: "UP" }), 2);
    assert.equal(await metricValue(live, { component: "nse", service: "db", state: "UP" }), 1);
    await h.close(conn("a", "web"), ctx());
    await h.close(conn("b", "web"), ctx());
    assert.equal(await metricValue(live, { service: "web" }), 0, "a series seen stays, at 0");
    untrack();
    assert.equal(await metricValue(live, { service: "db" }), 0, "an untracked hop counts nothing");
  });

  it("takes the state a source gives (a client's HEALING)", async () => {
    await enableMetrics();
    const held = [
      { ...conn("a", "web"), state: State.UP },
      { ...conn("b", "web"), state: State.DOWN },
    ];
    const untrack = trackConnections({
      component: "nsc",
      connections: () => held,
      stateOf: (c) => (c.id === "a" ? "HEALING" : State[c.state]),
    });
    assert.equal(await metricValue(live, { component: "nsc", state: "HEALING" }), 1);
    assert.equal(await metricValue(live, { component: "nsc", state: "DOWN" }), 1);
    untrack();
  });

  it("keeps nothing while metrics are off", async () => {
    const untrack = trackConnections({ component: "nse", connections: () => [conn("a", "web")] });
    await enableMetrics();
    assert.equal(await metricValue(live), undefined);
    untrack();
  });
});
