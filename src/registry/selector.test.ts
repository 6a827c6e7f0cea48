// Endpoint selection algorithm (spec §4.3).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Destination, Match, NetworkServiceEndpoint } from "../api/registry.js";
import { endpoint, service } from "./client.js";
import { liveEndpoints, selectEndpoints } from "./selector.js";

const SVC = "my-service";

function nse(name: string, labels: Record<string, string>, svc = SVC): NetworkServiceEndpoint {
  return endpoint({
    name,
    networkServiceNames: [svc],
    networkServiceLabels: { [svc]: { labels } },
    url: `tcp://198.18.0.1:${5000 + name.length}`,
  });
}

function match(p: Partial<Match>): Match {
  return { sourceSelector: {}, routes: [], fallthrough: false, metadata: undefined, ...p };
}

function to(destinationSelector: Record<string, string>, weight = 0): Destination {
  return { destinationSelector, weight };
}

// A small fleet used by most cases.
const a1 = nse("a1", { app: "a", nodeName: "node-1" });
const a2 = nse("a2", { app: "a", nodeName: "node-2" });
const b1 = nse("b1", { app: "b", nodeName: "node-1" });
const c2 = nse("c2", { app: "c", nodeName: "node-2", extra: "yes" });
const supplier = nse("supplier", { app: "supplier" });
const unlabelled = endpoint({ name: "unlabelled", networkServiceNames: [SVC] });
const otherService = nse("other-svc", { app: "a", nodeName: "node-1" }, "other-service");
const fleet = [a1, a2, b1, c2, supplier, unlabelled];

interface Case {
  name: string;
  matches: Match[];
  client: Record<string, string>;
  nses: NetworkServiceEndpoint[];
  want: string[];
}

const cases: Case[] = [
  {
    name: "no matches: every endpoint is a candidate",
    matches: [],
    client: { app: "nsc" },
    nses: fleet,
    want: ["a1", "a2", "b1", "c2", "supplier", "unlabelled"],
  },
  {
    name: "no matches and no endpoints: nothing",
    matches: [],
    client: {},
    nses: [],
    want: [],
  },
  {
    name: "single route selects by destination selector",
    matches: [match({ routes: [to({ app: "a" })] })],
    client: {},
    nses: fleet,
    want: ["a1", "a2"],
  },
  {
    name: "destination selector is a subset of the endpoint's labels (extra labels allowed)",
    matches: [match({ routes: [to({ app: "c" })] })],
    client: {},
    nses: fleet,
    want: ["c2"],
  },
  {
    name: "destination selector with two keys must match both",
    matches: [match({ routes: [to({ app: "a", nodeName: "node-2" })] })],
    client: {},
    nses: fleet,
    want: ["a2"],
  },
  {
    name: "destination selector key the endpoint lacks: no candidate",
    matches: [match({ routes: [to({ app: "c", extra: "no" })] })],
    client: {},
    nses: fleet,
    want: [],
  },
  {
    name: "empty destination selector selects every endpoint, labelled for the service or not",
    matches: [match({ routes: [to({})] })],
    client: {},
    nses: [a1, unlabelled, otherService],
    // An empty selector is a subset of any label map, including a missing one (as in Go, len(nil) >= len({})).
    want: ["a1", "unlabelled", "other-svc"],
  },
  {
    name: "source selector not a subset of the client labels: match skipped",
    matches: [
      match({ sourceSelector: { app: "firewall" }, routes: [to({ app: "a" })] }),
      match({ routes: [to({ app: "b" })] }),
    ],
    client: { app: "nsc" },
    nses: fleet,
    want: ["b1"],
  },
  {
    name: "source selector is a subset of the client labels: match applies",
    matches: [
      match({ sourceSelector: { app: "firewall" }, routes: [to({ app: "a" })] }),
      match({ routes: [to({ app: "b" })] }),
    ],
    client: { app: "firewall", nodeName: "node-1" },
    nses: fleet,
    want: ["a1", "a2"],
  },
  {
    name: "source selector with more keys than the client has: skipped",
    matches: [
      match({ sourceSelector: { app: "firewall", tier: "1" }, routes: [to({ app: "a" })] }),
      match({ routes: [to({ app: "b" })] }),
    ],
    client: { app: "firewall" },
    nses: fleet,
    want: ["b1"],
  },
  {
    name: "source selector value templated with the client's own labels",
    matches: [
      match({ sourceSelector: { zone: "{{.region}}-a" }, routes: [to({ app: "a" })] }),
      match({ routes: [to({ app: "b" })] }),
    ],
    client: { region: "eu", zone: "eu-a" },
    nses: fleet,
    want: ["a1", "a2"],
  },
  {
    name: "routes are taken in order, then endpoints in order",
    matches: [match({ routes: [to({ app: "b" }), to({ app: "c" }), to({ app: "a" })] })],
    client: {},
    nses: fleet,
    want: ["b1", "c2", "a1", "a2"],
  },
  {
    name: "route weight is ignored",
    matches: [match({ routes: [to({ app: "b" }, 1), to({ app: "a" }, 100)] })],
    client: {},
    nses: fleet,
    want: ["b1", "a1", "a2"],
  },
  {
    name: "an endpoint matched by two routes appears once, at its first route",
    matches: [match({ routes: [to({ nodeName: "node-1" }), to({ app: "a" })] })],
    client: {},
    nses: fleet,
    want: ["a1", "b1", "a2"],
  },
  {
    name: "templated destination {{.nodeName}} picks the endpoint on the client's node",
    matches: [match({ routes: [to({ app: "a", nodeName: "{{.nodeName}}" })] })],
    client: { nodeName: "node-2", app: "nsc" },
    nses: fleet,
    want: ["a2"],
  },
  {
    name: "templated destination with spaces {{ .nodeName }}",
    matches: [match({ routes: [to({ nodeName: "{{ .nodeName }}" })] })],
    client: { nodeName: "node-1" },
    nses: fleet,
    want: ["a1", "b1"],
  },
  {
    name: "templated destination for a client without nodeName matches nothing",
    matches: [match({ routes: [to({ nodeName: "{{.nodeName}}" })] })],
    client: { app: "nsc" },
    nses: fleet,
    want: [],
  },
  {
    name: "fallthrough with no candidates continues with the next match",
    matches: [
      match({ fallthrough: true, routes: [to({ app: "a", nodeName: "{{.nodeName}}" })] }),
      match({ routes: [to({ app: "supplier" })] }),
    ],
    client: { nodeName: "node-3" },
    nses: fleet,
    want: ["supplier"],
  },
  {
    name: "fallthrough with candidates stops there",
    matches: [
      match({ fallthrough: true, routes: [to({ app: "a", nodeName: "{{.nodeName}}" })] }),
      match({ routes: [to({ app: "supplier" })] }),
    ],
    client: { nodeName: "node-1" },
    nses: fleet,
    want: ["a1"],
  },
  {
    name: "two fallthrough matches without candidates reach the third",
    matches: [
      match({ fallthrough: true, routes: [to({ app: "x" })] }),
      match({ fallthrough: true, routes: [to({ app: "y" })] }),
      match({ routes: [to({ app: "c" })] }),
    ],
    client: {},
    nses: fleet,
    want: ["c2"],
  },
  {
    name: "fallthrough on the last match with no candidates: no candidates",
    matches: [match({ fallthrough: true, routes: [to({ app: "x" })] })],
    client: {},
    nses: fleet,
    want: [],
  },
  {
    name: "no fallthrough and no candidates: stops with none (does not try the next match)",
    matches: [match({ routes: [to({ app: "x" })] }), match({ routes: [to({ app: "a" })] })],
    client: {},
    nses: fleet,
    want: [],
  },
  {
    name: "metadata present, no routes, no candidates: every endpoint",
    matches: [match({ metadata: { labels: { p2p: "true" } } })],
    client: {},
    nses: fleet,
    want: ["a1", "a2", "b1", "c2", "supplier", "unlabelled"],
  },
  {
    name: "metadata present with empty labels, no routes: every endpoint",
    matches: [match({ metadata: { labels: {} } })],
    client: {},
    nses: [a1, b1],
    want: ["a1", "b1"],
  },
  {
    name: "no metadata, no routes: no candidates",
    matches: [match({})],
    client: {},
    nses: fleet,
    want: [],
  },
  {
    name: "metadata present but routes without candidates: no candidates",
    matches: [match({ metadata: { labels: { p2p: "true" } }, routes: [to({ app: "x" })] })],
    client: {},
    nses: fleet,
    want: [],
  },
  {
    name: "metadata present and routes with candidates: only the candidates",
    matches: [match({ metadata: { labels: { p2p: "true" } }, routes: [to({ app: "b" })] })],
    client: {},
    nses: fleet,
    want: ["b1"],
  },
  {
    name: "skipped match with metadata does not yield every endpoint",
    matches: [match({ sourceSelector: { app: "firewall" }, metadata: { labels: {} } })],
    client: { app: "nsc" },
    nses: fleet,
    want: [],
  },
  {
    name: "no match applies: no candidates",
    matches: [
      match({ sourceSelector: { app: "firewall" }, routes: [to({ app: "a" })] }),
      match({ sourceSelector: { app: "passthrough" }, routes: [to({ app: "b" })] }),
    ],
    client: { app: "nsc" },
    nses: fleet,
    want: [],
  },
  {
    name: "endpoint labelled only for another service does not match",
    matches: [match({ routes: [to({ app: "a" })] })],
    client: {},
    nses: [otherService, a2],
    want: ["a2"],
  },
  {
    name: "endpoint labelled for both services matches with this service's labels",
    matches: [match({ routes: [to({ app: "a" })] })],
    client: {},
    nses: [
      endpoint({
        name: "dual",
        networkServiceNames: [SVC, "other-service"],
        networkServiceLabels: { [SVC]: { labels: { app: "b" } }, "other-service": { labels: { app: "a" } } },
      }),
      endpoint({
        name: "dual2",
        networkServiceNames: [SVC, "other-service"],
        networkServiceLabels: { [SVC]: { labels: { app: "a" } }, "other-service": { labels: { app: "b" } } },
      }),
    ],
    want: ["dual2"],
  },
  {
    name: "endpoint without labels for the service does not match a non-empty selector",
    matches: [match({ routes: [to({ app: "a" })] })],
    client: {},
    nses: [unlabelled],
    want: [],
  },
];

// nse-composition (deployments-k8s examples/features/nse-composition): a chain by source selectors plus a
// catch-all route to the firewall.
const compositionMatches: Match[] = [
  match({ sourceSelector: { app: "firewall" }, routes: [to({ app: "passthrough-1" })] }),
  match({ sourceSelector: { app: "passthrough-1" }, routes: [to({ app: "passthrough-2" })] }),
  match({ sourceSelector: { app: "passthrough-2" }, routes: [to({ app: "passthrough-3" })] }),
  match({ sourceSelector: { app: "passthrough-3" }, routes: [to({ app: "nse-kernel" })] }),
  match({ routes: [to({ app: "firewall" })] }),
];
const compositionNses = ["firewall", "passthrough-1", "passthrough-2", "passthrough-3", "nse-kernel"].map(
  (app) => nse(`nse-${app}`, { app, nodeName: "node-1" }),
);
const composition: [client: Record<string, string>, want: string][] = [
  [{ app: "firewall", nodeName: "node-1", podName: "firewall-0" }, "nse-passthrough-1"],
  [{ app: "passthrough-1" }, "nse-passthrough-2"],
  [{ app: "passthrough-2" }, "nse-passthrough-3"],
  [{ app: "passthrough-3" }, "nse-nse-kernel"],
  [{ nodeName: "node-1", podName: "alpine" }, "nse-firewall"],
  [{}, "nse-firewall"],
  [{ app: "nse-kernel" }, "nse-firewall"],
];
for (const [client, want] of composition) {
  cases.push({
    name: `nse-composition: client ${JSON.stringify(client)} → ${want}`,
    matches: compositionMatches,
    client,
    nses: compositionNses,
    want: [want],
  });
}

describe("selectEndpoints", () => {
  for (const c of cases) {
    it(c.name, () => {
      const ns = service({ name: SVC, payload: "ETHERNET", matches: c.matches });
      const got = selectEndpoints(ns, c.client, c.nses);
      assert.deepEqual(
        got.map((n) => n.name),
        c.want,
      );
    });
  }

  it("returns the endpoint records themselves, unmodified", () => {
    const ns = service({ name: SVC, matches: [match({ routes: [to({ app: "b" })] })] });
    const before = structuredClone(b1);
    const got = selectEndpoints(ns, {}, fleet);
    assert.equal(got.length, 1);
    assert.equal(got[0], b1);
    assert.deepEqual(b1, before);
  });

  it("the service name decides which labels are read", () => {
    const matches = [match({ routes: [to({ app: "a" })] })];
    const nses = [a1, otherService];
    assert.deepEqual(
      selectEndpoints(service({ name: "other-service", matches }), {}, nses).map((n) => n.name),
      ["other-svc"],
    );
    assert.deepEqual(
      selectEndpoints(service({ name: SVC, matches }), {}, nses).map((n) => n.name),
      ["a1"],
    );
  });
});

describe("liveEndpoints", () => {
  const nowMs = 1_700_000_000_000;
  const at = (name: string, seconds: number, nanos = 0): NetworkServiceEndpoint =>
    endpoint({ name, expirationTime: { seconds, nanos } });
  const nowS = nowMs / 1000;

  it("keeps endpoints without an expiration time", () => {
    assert.deepEqual(
      liveEndpoints([endpoint({ name: "forever" })], nowMs).map((n) => n.name),
      ["forever"],
    );
  });

  it("drops expired endpoints and keeps future ones, preserving order", () => {
    const list = [
      at("future-1", nowS + 60),
      at("past", nowS - 60),
      endpoint({ name: "forever" }),
      at("future-2", nowS + 1),
      at("long-gone", 0),
    ];
    assert.deepEqual(
      liveEndpoints(list, nowMs).map((n) => n.name),
      ["future-1", "forever", "future-2"],
    );
  });

  it("an endpoint expiring exactly now is expired", () => {
    assert.deepEqual(liveEndpoints([at("now", nowS)], nowMs), []);
  });

  it("counts nanoseconds", () => {
    const list = [at("just-before", nowS - 1, 999_000_000), at("just-after", nowS, 1_000_000)];
    assert.deepEqual(
      liveEndpoints(list, nowMs).map((n) => n.name),
      ["just-after"],
    );
  });

  it("defaults to the current time", () => {
    const realNow = Math.floor(Date.now() / 1000);
    const list = [at("old", realNow - 3600), at("fresh", realNow + 3600)];
    assert.deepEqual(
      liveEndpoints(list).map((n) => n.name),
      ["fresh"],
    );
  });

  it("does not modify its input", () => {
    const list = [at("past", nowS - 60), at("future", nowS + 60)];
    liveEndpoints(list, nowMs);
    assert.deepEqual(
      list.map((n) => n.name),
      ["past", "future"],
    );
  });
});
