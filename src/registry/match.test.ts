// Query-as-template matching for Find (spec §4.3): empty query fields are wildcards.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Match, NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import { endpoint, service } from "./client.js";
import { matchEndpoint, matchService } from "./match.js";

const stored: NetworkServiceEndpoint = endpoint({
  name: "nse-kernel-1",
  networkServiceNames: ["icmp-responder", "vl3"],
  networkServiceLabels: {
    "icmp-responder": { labels: { app: "icmp", nodeName: "node-1" } },
    vl3: { labels: { app: "vl3" } },
  },
  url: "tcp://198.18.0.5:5001",
  expirationTime: { seconds: 1_700_000_060, nanos: 250_000_000 },
  initialRegistrationTime: { seconds: 1_700_000_000, nanos: 0 },
  pathIds: ["spiffe://k8s.nsm/ns/default/pod/nse-kernel-1"],
});

describe("matchEndpoint", () => {
  const cases: { name: string; query: Partial<NetworkServiceEndpoint> | undefined; want: boolean }[] = [
    { name: "no query matches everything", query: undefined, want: true },
    { name: "empty query is a wildcard", query: {}, want: true },
    // name: exact
    { name: "name equal", query: { name: "nse-kernel-1" }, want: true },
    { name: "name is not a substring match", query: { name: "nse-kernel" }, want: false },
    { name: "name with a suffix", query: { name: "nse-kernel-10" }, want: false },
    { name: "name differs in case", query: { name: "NSE-kernel-1" }, want: false },
    // network_service_names: every queried name present
    { name: "one queried service present", query: { networkServiceNames: ["vl3"] }, want: true },
    {
      name: "all queried services present, in another order",
      query: { networkServiceNames: ["vl3", "icmp-responder"] },
      want: true,
    },
    { name: "one queried service absent", query: { networkServiceNames: ["vl3", "other"] }, want: false },
    { name: "queried service absent", query: { networkServiceNames: ["other"] }, want: false },
    { name: "queried service is a prefix only", query: { networkServiceNames: ["icmp"] }, want: false },
    { name: "empty service list is a wildcard", query: { networkServiceNames: [] }, want: true },
    // network_service_labels: per service, subset
    {
      name: "labels subset for one service",
      query: { networkServiceLabels: { "icmp-responder": { labels: { app: "icmp" } } } },
      want: true,
    },
    {
      name: "labels equal for one service",
      query: { networkServiceLabels: { "icmp-responder": { labels: { app: "icmp", nodeName: "node-1" } } } },
      want: true,
    },
    {
      name: "labels for two services",
      query: {
        networkServiceLabels: {
          "icmp-responder": { labels: { nodeName: "node-1" } },
          vl3: { labels: { app: "vl3" } },
        },
      },
      want: true,
    },
    {
      name: "label value differs",
      query: { networkServiceLabels: { "icmp-responder": { labels: { nodeName: "node-2" } } } },
      want: false,
    },
    {
      name: "label key absent",
      query: { networkServiceLabels: { "icmp-responder": { labels: { zone: "a" } } } },
      want: false,
    },
    {
      name: "label belongs to another service of the record",
      query: { networkServiceLabels: { vl3: { labels: { nodeName: "node-1" } } } },
      want: false,
    },
    {
      name: "one of two services fails",
      query: {
        networkServiceLabels: {
          "icmp-responder": { labels: { app: "icmp" } },
          vl3: { labels: { app: "other" } },
        },
      },
      want: false,
    },
    {
      name: "queried service missing from the record, even with no labels",
      query: { networkServiceLabels: { other: { labels: {} } } },
      want: false,
    },
    {
      name: "queried service present with no queried labels",
      query: { networkServiceLabels: { vl3: { labels: {} } } },
      want: true,
    },
    {
      name: "query label with an empty value does not match an absent key",
      query: { networkServiceLabels: { vl3: { labels: { zone: "" } } } },
      want: false,
    },
    // expiration_time: seconds equal
    {
      name: "expiration seconds equal, nanos differ",
      query: { expirationTime: { seconds: 1_700_000_060, nanos: 0 } },
      want: true,
    },
    {
      name: "expiration seconds differ",
      query: { expirationTime: { seconds: 1_700_000_061, nanos: 250_000_000 } },
      want: false,
    },
    // url: substring
    { name: "url equal", query: { url: "tcp://198.18.0.5:5001" }, want: true },
    { name: "url substring (port)", query: { url: ":5001" }, want: true },
    { name: "url substring (host)", query: { url: "198.18.0.5" }, want: true },
    { name: "url not contained", query: { url: ":5002" }, want: false },
    { name: "url longer than the stored one", query: { url: "tcp://198.18.0.5:50011" }, want: false },
    // combinations: all fields must match
    {
      name: "all fields matching",
      query: {
        name: "nse-kernel-1",
        networkServiceNames: ["icmp-responder"],
        networkServiceLabels: { "icmp-responder": { labels: { app: "icmp" } } },
        expirationTime: { seconds: 1_700_000_060, nanos: 0 },
        url: "198.18",
      },
      want: true,
    },
    {
      name: "all fields matching but the url",
      query: {
        name: "nse-kernel-1",
        networkServiceNames: ["icmp-responder"],
        networkServiceLabels: { "icmp-responder": { labels: { app: "icmp" } } },
        url: "unix://",
      },
      want: false,
    },
    {
      name: "all fields matching but the name",
      query: { name: "nse-kernel-2", networkServiceNames: ["icmp-responder"], url: "198.18" },
      want: false,
    },
    { name: "fields not part of matching are ignored (pathIds)", query: { pathIds: ["x"] }, want: true },
    {
      name: "fields not part of matching are ignored (initial registration time)",
      query: { initialRegistrationTime: { seconds: 1, nanos: 0 } },
      want: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const query = c.query === undefined ? undefined : endpoint(c.query);
      assert.equal(matchEndpoint(query, stored), c.want);
    });
  }

  it("expiration query does not match a record without expiration", () => {
    const q = endpoint({ expirationTime: { seconds: 0, nanos: 0 } });
    assert.equal(matchEndpoint(q, endpoint({ name: "x" })), false);
    assert.equal(matchEndpoint(q, endpoint({ name: "x", expirationTime: { seconds: 0, nanos: 5 } })), true);
  });

  it("url query does not match a record without url", () => {
    assert.equal(matchEndpoint(endpoint({ url: "tcp" }), endpoint({ name: "x" })), false);
  });

  it("does not modify the query or the record", () => {
    const q = endpoint({ name: "nse-kernel-1", networkServiceLabels: { vl3: { labels: { app: "vl3" } } } });
    const qBefore = structuredClone(q);
    const sBefore = structuredClone(stored);
    matchEndpoint(q, stored);
    assert.deepEqual(q, qBefore);
    assert.deepEqual(stored, sBefore);
  });
});

function m(p: Partial<Match>): Match {
  return { sourceSelector: {}, routes: [], fallthrough: false, metadata: undefined, ...p };
}

const storedNs: NetworkService = service({
  name: "nse-composition",
  payload: "ETHERNET",
  matches: [
    m({
      sourceSelector: { app: "firewall", nodeName: "node-1" },
      routes: [
        { destinationSelector: { app: "passthrough-1", zone: "a" }, weight: 1 },
        { destinationSelector: { app: "passthrough-2" }, weight: 0 },
      ],
      metadata: { labels: { p2p: "true", mtu: "1400" } },
    }),
    m({ routes: [{ destinationSelector: { app: "firewall" }, weight: 0 }], fallthrough: true }),
  ],
  pathIds: ["spiffe://k8s.nsm/ns/nsm-system/pod/registry"],
});

describe("matchService", () => {
  const cases: { name: string; query: Partial<NetworkService> | undefined; want: boolean }[] = [
    { name: "no query matches everything", query: undefined, want: true },
    { name: "empty query is a wildcard", query: {}, want: true },
    { name: "name equal", query: { name: "nse-composition" }, want: true },
    { name: "name is not a substring match", query: { name: "nse-comp" }, want: false },
    { name: "name differs", query: { name: "icmp-responder" }, want: false },
    { name: "payload equal", query: { payload: "ETHERNET" }, want: true },
    { name: "payload differs", query: { payload: "IP" }, want: false },
    { name: "payload case differs", query: { payload: "ethernet" }, want: false },
    { name: "name and payload equal", query: { name: "nse-composition", payload: "ETHERNET" }, want: true },
    { name: "name equal, payload differs", query: { name: "nse-composition", payload: "IP" }, want: false },
    { name: "empty matches list is a wildcard", query: { matches: [] }, want: true },
    { name: "pathIds are ignored", query: { pathIds: ["other"] }, want: true },
    { name: "matches deep-equal", query: { matches: structuredClone(storedNs.matches) }, want: true },
    {
      name: "matches deep-equal with map keys in another order",
      query: {
        matches: [
          m({
            metadata: { labels: { mtu: "1400", p2p: "true" } },
            routes: [
              { weight: 1, destinationSelector: { zone: "a", app: "passthrough-1" } },
              { weight: 0, destinationSelector: { app: "passthrough-2" } },
            ],
            sourceSelector: { nodeName: "node-1", app: "firewall" },
          }),
          m({ fallthrough: true, routes: [{ destinationSelector: { app: "firewall" }, weight: 0 }] }),
        ],
      },
      want: true,
    },
    { name: "matches prefix only", query: { matches: [structuredClone(storedNs.matches[0]!)] }, want: false },
    {
      name: "matches in another order",
      query: { matches: structuredClone(storedNs.matches).reverse() },
      want: false,
    },
    {
      name: "source selector value differs",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, sourceSelector: { app: "firewall", nodeName: "node-2" } } : x,
        ),
      },
      want: false,
    },
    {
      name: "source selector has an extra key",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, sourceSelector: { ...x.sourceSelector, tier: "1" } } : x,
        ),
      },
      want: false,
    },
    {
      name: "fallthrough differs",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 1 ? { ...x, fallthrough: false } : x,
        ),
      },
      want: false,
    },
    {
      name: "route order differs",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, routes: [...x.routes].reverse() } : x,
        ),
      },
      want: false,
    },
    {
      name: "route weight differs",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, routes: x.routes.map((r) => ({ ...r, weight: 7 })) } : x,
        ),
      },
      want: false,
    },
    {
      name: "metadata label differs",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, metadata: { labels: { p2p: "false", mtu: "1400" } } } : x,
        ),
      },
      want: false,
    },
    {
      name: "metadata missing",
      query: {
        matches: structuredClone(storedNs.matches).map((x, i) =>
          i === 0 ? { ...x, metadata: undefined } : x,
        ),
      },
      want: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const query = c.query === undefined ? undefined : service(c.query);
      assert.equal(matchService(query, storedNs), c.want);
    });
  }

  it("a matches query does not match a service without matches", () => {
    const q = service({ matches: [m({ routes: [{ destinationSelector: { app: "x" }, weight: 0 }] })] });
    assert.equal(matchService(q, service({ name: "plain" })), false);
  });

  it("does not modify the query or the record", () => {
    const q = service({ matches: structuredClone(storedNs.matches) });
    const qBefore = structuredClone(q);
    const sBefore = structuredClone(storedNs);
    matchService(q, storedNs);
    assert.deepEqual(q, qBefore);
    assert.deepEqual(storedNs, sBefore);
  });
});
