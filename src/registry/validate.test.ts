// Registry input validation: every failure is INVALID_ARGUMENT and names the offending field.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Match, NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import { StatusError } from "../core/errors.js";
import { endpoint, service } from "./client.js";
import {
  checkLabels,
  checkName,
  checkTimestamp,
  limits,
  validateEndpoint,
  validateEndpointQuery,
  validateNetworkService,
  validateServiceQuery,
} from "./validate.js";

function assertInvalid(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.ok(err.message.includes(field), `message "${err.message}" should name "${field}"`);
    return true;
  });
}

const many = (n: number, prefix = "k"): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, "v"]));

const goodNse = (p: Partial<NetworkServiceEndpoint> = {}): NetworkServiceEndpoint =>
  endpoint({
    name: "nse-kernel-1",
    networkServiceNames: ["icmp-responder"],
    networkServiceLabels: { "icmp-responder": { labels: { app: "icmp", nodeName: "node-1" } } },
    url: "tcp://198.18.0.5:5001",
    expirationTime: { seconds: 1_700_000_060, nanos: 0 },
    initialRegistrationTime: { seconds: 1_700_000_000, nanos: 999_999_999 },
    pathIds: ["spiffe://k8s.nsm/ns/default/pod/nse-kernel-1"],
    ...p,
  });

const m = (p: Partial<Match>): Match => ({
  sourceSelector: {},
  routes: [],
  fallthrough: false,
  metadata: undefined,
  ...p,
});

const goodNs = (p: Partial<NetworkService> = {}): NetworkService =>
  service({
    name: "icmp-responder",
    payload: "ETHERNET",
    matches: [
      m({
        sourceSelector: { app: "firewall" },
        routes: [{ destinationSelector: { nodeName: "{{.nodeName}}" }, weight: 0 }],
        metadata: { labels: { p2p: "true" } },
      }),
    ],
    ...p,
  });

describe("checkName", () => {
  it("accepts ordinary names", () => {
    for (const n of [
      "a",
      "nse-kernel-1",
      "icmp-responder@my.cluster",
      "a.b_c:d/e",
      "x".repeat(limits.nameMax),
    ]) {
      assert.doesNotThrow(() => checkName(n, "f", true), n);
    }
  });
  it("empty: required fails, optional passes", () => {
    assertInvalid(() => checkName("", "thing.name", true), "thing.name");
    assert.doesNotThrow(() => checkName("", "thing.name", false));
  });
  it("over 253 characters fails", () => {
    assertInvalid(() => checkName("x".repeat(limits.nameMax + 1), "thing.name", false), "thing.name");
  });
  for (const [label, n] of [
    ["space", "a b"],
    ["leading space", " a"],
    ["trailing newline", "a\n"],
    ["tab", "a\tb"],
    ["NUL", "a\u0000b"],
    ["DEL", "a\u007fb"],
    ["non-breaking space", "a\u00a0b"],
  ] as const) {
    it(`rejects ${label}`, () => assertInvalid(() => checkName(n, "thing.name", true), "thing.name"));
  }
});

describe("checkLabels", () => {
  it("accepts undefined, empty and 64 entries", () => {
    assert.doesNotThrow(() => checkLabels(undefined, "l"));
    assert.doesNotThrow(() => checkLabels({}, "l"));
    assert.doesNotThrow(() => checkLabels(many(limits.labelsMax), "l"));
  });
  it("rejects 65 entries", () =>
    assertInvalid(() => checkLabels(many(limits.labelsMax + 1), "my.labels"), "my.labels"));
  it("rejects an empty key", () => assertInvalid(() => checkLabels({ "": "v" }, "my.labels"), "my.labels"));
  it("value lengths: 1024 ok, 1025 rejected", () => {
    assert.doesNotThrow(() => checkLabels({ k: "v".repeat(limits.labelValueMax) }, "l"));
    assertInvalid(
      () => checkLabels({ k: "v".repeat(limits.labelValueMax + 1) }, "my.labels"),
      "my.labels[k]",
    );
  });
  it("key lengths: 253 ok, 254 rejected", () => {
    assert.doesNotThrow(() => checkLabels({ ["k".repeat(limits.labelKeyMax)]: "v" }, "l"));
    assertInvalid(() => checkLabels({ ["k".repeat(limits.labelKeyMax + 1)]: "v" }, "my.labels"), "my.labels");
  });
  it("empty values are allowed", () => assert.doesNotThrow(() => checkLabels({ k: "" }, "l")));
});

describe("checkTimestamp", () => {
  const ok: [string, number, number][] = [
    ["epoch", 0, 0],
    ["now-ish", 1_700_000_000, 500],
    ["max nanos", 1, 999_999_999],
    ["0001-01-01", -62_135_596_800, 0],
    ["9999-12-31T23:59:59", 253_402_300_799, 999_999_999],
  ];
  for (const [label, seconds, nanos] of ok) {
    it(`accepts ${label}`, () => assert.doesNotThrow(() => checkTimestamp({ seconds, nanos }, "ts")));
  }
  it("accepts undefined", () => assert.doesNotThrow(() => checkTimestamp(undefined, "ts")));
  const bad: [string, number, number][] = [
    ["nanos 1e9", 1, 1e9],
    ["negative nanos", 1, -1],
    ["fractional nanos", 1, 0.5],
    ["huge seconds", 1e15, 0],
    ["seconds one past year 9999", 253_402_300_800, 0],
    ["seconds before year 1", -62_135_596_801, 0],
    ["fractional seconds", 1.5, 0],
    ["NaN seconds", Number.NaN, 0],
    ["infinite seconds", Number.POSITIVE_INFINITY, 0],
  ];
  for (const [label, seconds, nanos] of bad) {
    it(`rejects ${label}`, () =>
      assertInvalid(() => checkTimestamp({ seconds, nanos }, "x.expiration_time"), "x.expiration_time"));
  }
});

describe("validateEndpoint", () => {
  it("accepts a complete, well-formed record", () => assert.doesNotThrow(() => validateEndpoint(goodNse())));

  it("accepts a record with only a name", () =>
    assert.doesNotThrow(() => validateEndpoint(endpoint({ name: "x" }))));

  for (const url of [
    "tcp://1.2.3.4:5001",
    "tcp://[::1]:5002",
    "unix:///run/x.sock",
    "inode://4/123",
    "tcp://nsmgr:5001",
    "",
  ]) {
    it(`accepts url ${JSON.stringify(url)}`, () =>
      assert.doesNotThrow(() => validateEndpoint(goodNse({ url }))));
  }

  const bad: { name: string; nse: NetworkServiceEndpoint; field: string }[] = [
    { name: "empty name", nse: goodNse({ name: "" }), field: "network_service_endpoint.name" },
    {
      name: "name over 253 characters",
      nse: goodNse({ name: "n".repeat(254) }),
      field: "network_service_endpoint.name",
    },
    { name: "name with a space", nse: goodNse({ name: "nse 1" }), field: "network_service_endpoint.name" },
    { name: "name with a newline", nse: goodNse({ name: "nse\n1" }), field: "network_service_endpoint.name" },
    { name: "url http://x", nse: goodNse({ url: "http://x" }), field: "network_service_endpoint.url" },
    {
      name: "url tcp://host without port",
      nse: goodNse({ url: "tcp://host" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url port over 65535",
      nse: goodNse({ url: "tcp://h:99999" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url unix://relative",
      nse: goodNse({ url: "unix://relative" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url inode without ino",
      nse: goodNse({ url: "inode://4" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url inode with letters",
      nse: goodNse({ url: "inode://a/b" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url bare host:port",
      nse: goodNse({ url: "1.2.3.4:5001" }),
      field: "network_service_endpoint.url",
    },
    {
      name: "url over 1024 characters",
      nse: goodNse({ url: `unix:///${"p".repeat(1024)}` }),
      field: "network_service_endpoint.url",
    },
    {
      name: "empty service name",
      nse: goodNse({ networkServiceNames: ["icmp-responder", ""] }),
      field: "network_service_endpoint.network_service_names[1]",
    },
    {
      name: "service name with whitespace",
      nse: goodNse({ networkServiceNames: ["icmp responder"] }),
      field: "network_service_endpoint.network_service_names[0]",
    },
    {
      name: "too many services",
      nse: goodNse({ networkServiceNames: Array.from({ length: 65 }, (_, i) => `s${i}`) }),
      field: "network_service_endpoint.network_service_names",
    },
    {
      name: "too many labelled services",
      nse: goodNse({
        networkServiceLabels: Object.fromEntries(
          Array.from({ length: 65 }, (_, i) => [`s${i}`, { labels: {} }]),
        ),
      }),
      field: "network_service_endpoint.network_service_labels",
    },
    {
      name: "labelled service with whitespace in its name",
      nse: goodNse({ networkServiceLabels: { "bad name": { labels: {} } } }),
      field: "network_service_endpoint.network_service_labels",
    },
    {
      name: "label map over 64 entries",
      nse: goodNse({ networkServiceLabels: { svc: { labels: many(65) } } }),
      field: "network_service_endpoint.network_service_labels[svc].labels",
    },
    {
      name: "over-long label value",
      nse: goodNse({ networkServiceLabels: { svc: { labels: { app: "v".repeat(1025) } } } }),
      field: "network_service_endpoint.network_service_labels[svc].labels[app]",
    },
    {
      name: "expiration nanos 1e9",
      nse: goodNse({ expirationTime: { seconds: 1, nanos: 1e9 } }),
      field: "network_service_endpoint.expiration_time",
    },
    {
      name: "expiration seconds huge",
      nse: goodNse({ expirationTime: { seconds: 1e15, nanos: 0 } }),
      field: "network_service_endpoint.expiration_time",
    },
    {
      name: "initial registration time out of range",
      nse: goodNse({ initialRegistrationTime: { seconds: -1e12, nanos: 0 } }),
      field: "network_service_endpoint.initial_registration_time",
    },
    {
      name: "too many path ids",
      nse: goodNse({ pathIds: Array.from({ length: 33 }, (_, i) => `spiffe://d/p${i}`) }),
      field: "network_service_endpoint.path_ids",
    },
  ];
  for (const c of bad) {
    it(`rejects ${c.name}`, () => assertInvalid(() => validateEndpoint(c.nse), c.field));
  }

  it("name is optional when not required", () => {
    assert.doesNotThrow(() => validateEndpoint(goodNse({ name: "" }), false));
  });

  it("uses the given field prefix", () => {
    assertInvalid(() => validateEndpoint(goodNse({ name: "a b" }), true, "nse"), "nse.name");
  });

  it("accepts exactly the limits", () => {
    assert.doesNotThrow(() =>
      validateEndpoint(
        goodNse({
          name: "n".repeat(253),
          networkServiceNames: Array.from({ length: 64 }, (_, i) => `s${i}`),
          networkServiceLabels: { svc: { labels: many(64) } },
          pathIds: Array.from({ length: 32 }, (_, i) => `spiffe://d/p${i}`),
        }),
      ),
    );
  });
});

describe("validateNetworkService", () => {
  it("accepts a well-formed service", () => assert.doesNotThrow(() => validateNetworkService(goodNs())));

  for (const payload of ["", "IP", "ETHERNET"]) {
    it(`accepts payload ${JSON.stringify(payload)}`, () =>
      assert.doesNotThrow(() => validateNetworkService(goodNs({ payload }))));
  }

  const bad: { name: string; ns: NetworkService; field: string }[] = [
    { name: "empty name", ns: goodNs({ name: "" }), field: "network_service.name" },
    { name: "name with a tab", ns: goodNs({ name: "a\tb" }), field: "network_service.name" },
    {
      name: "name over 253 characters",
      ns: goodNs({ name: "s".repeat(254) }),
      field: "network_service.name",
    },
    { name: "payload lower case", ns: goodNs({ payload: "ip" }), field: "network_service.payload" },
    { name: "payload unknown", ns: goodNs({ payload: "TCP" }), field: "network_service.payload" },
    {
      name: "source selector over 64 entries",
      ns: goodNs({ matches: [m({}), m({ sourceSelector: many(65) })] }),
      field: "network_service.matches[1].source_selector",
    },
    {
      name: "metadata labels value too long",
      ns: goodNs({ matches: [m({ metadata: { labels: { p2p: "t".repeat(1025) } } })] }),
      field: "network_service.matches[0].metadata.labels",
    },
    {
      name: "destination selector with an empty key",
      ns: goodNs({
        matches: [
          m({
            routes: [
              { destinationSelector: {}, weight: 0 },
              { destinationSelector: { "": "x" }, weight: 0 },
            ],
          }),
        ],
      }),
      field: "network_service.matches[0].routes[1].destination_selector",
    },
    {
      name: "too many routes",
      ns: goodNs({
        matches: [m({ routes: Array.from({ length: 65 }, () => ({ destinationSelector: {}, weight: 0 })) })],
      }),
      field: "network_service.matches[0].routes",
    },
    {
      name: "too many matches",
      ns: goodNs({ matches: Array.from({ length: 65 }, () => m({})) }),
      field: "network_service.matches",
    },
    {
      name: "too many path ids",
      ns: goodNs({ pathIds: Array.from({ length: 33 }, (_, i) => `p${i}`) }),
      field: "network_service.path_ids",
    },
  ];
  for (const c of bad) {
    it(`rejects ${c.name}`, () => assertInvalid(() => validateNetworkService(c.ns), c.field));
  }

  it("name is optional when not required", () => {
    assert.doesNotThrow(() => validateNetworkService(goodNs({ name: "" }), false));
  });
});

describe("validateServiceQuery", () => {
  it("accepts an empty query", () => {
    assert.doesNotThrow(() => validateServiceQuery({ networkService: undefined, watch: true }));
    assert.doesNotThrow(() => validateServiceQuery({ networkService: service({}), watch: false }));
  });
  it("still rejects a bad payload", () => {
    assertInvalid(
      () => validateServiceQuery({ networkService: service({ payload: "X" }), watch: false }),
      "network_service.payload",
    );
  });
  it("still rejects a bad name", () => {
    assertInvalid(
      () => validateServiceQuery({ networkService: service({ name: "a b" }), watch: false }),
      "network_service.name",
    );
  });
});

describe("validateEndpointQuery", () => {
  it("accepts an empty query", () => {
    assert.doesNotThrow(() => validateEndpointQuery({ networkServiceEndpoint: undefined, watch: true }));
    assert.doesNotThrow(() => validateEndpointQuery({ networkServiceEndpoint: endpoint({}), watch: false }));
  });
  it("url is a substring, not a URL", () => {
    for (const url of ["5001", "tcp://", "198.18.", "http://x"]) {
      assert.doesNotThrow(
        () => validateEndpointQuery({ networkServiceEndpoint: endpoint({ url }), watch: false }),
        url,
      );
    }
  });
  it("rejects an over-long url", () => {
    assertInvalid(
      () =>
        validateEndpointQuery({ networkServiceEndpoint: endpoint({ url: "u".repeat(1025) }), watch: false }),
      "network_service_endpoint.url",
    );
  });
  it("still rejects bad names, labels and times", () => {
    assertInvalid(
      () => validateEndpointQuery({ networkServiceEndpoint: endpoint({ name: "a b" }), watch: false }),
      "network_service_endpoint.name",
    );
    assertInvalid(
      () =>
        validateEndpointQuery({
          networkServiceEndpoint: endpoint({ networkServiceLabels: { svc: { labels: many(65) } } }),
          watch: false,
        }),
      "network_service_endpoint.network_service_labels[svc].labels",
    );
    assertInvalid(
      () =>
        validateEndpointQuery({
          networkServiceEndpoint: endpoint({ expirationTime: { seconds: 0, nanos: -5 } }),
          watch: false,
        }),
      "network_service_endpoint.expiration_time",
    );
  });
  it("does not modify the query", () => {
    const q = { networkServiceEndpoint: endpoint({ name: "n", url: "5001" }), watch: false };
    validateEndpointQuery(q);
    assert.equal(q.networkServiceEndpoint.url, "5001");
  });
});
