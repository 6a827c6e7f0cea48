// The dashboard's model from registry records and nsmgr views: pure functions, no network.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Connection, State, type Mechanism } from "../api/connection.js";
import type { NetworkServiceEndpoint } from "../api/registry.js";
import { msToTimestamp } from "../core/time.js";
import { endpoint } from "../registry/client.js";
import { buildGraph, type MeshSnapshot, type NsmgrSnapshot } from "./graph.js";
import { nameMechanism, tfContextOf } from "./mechanism.js";
import { discoveredTargets, parseNsmgrTargets } from "./nsmgrs.js";
import { mergeRecords, registeredNsmgrs, registrarOf, spiffeName, type RegistrySnapshot } from "./records.js";
import { classify } from "./state.js";
import { traceLink } from "./tracelink.js";

const td = "spiffe://nsm-ts.local";
const inAMinute = msToTimestamp(Date.now() + 60_000);

/** A record registered through `nsmgr` on `node`, as the registry stores it. */
function nse(
  name: string,
  services: string[],
  nsmgr: string,
  node: string,
  extra: Record<string, string> = {},
): NetworkServiceEndpoint {
  return endpoint({
    name,
    networkServiceNames: services,
    networkServiceLabels: Object.fromEntries(
      services.map((s) => [s, { labels: { nodeName: node, ...extra } }]),
    ),
    url: `tcp://198.18.0.${nsmgr.endsWith("1") ? 1 : 2}:5001`,
    expirationTime: inAMinute,
    pathIds: [`${td}/${name}`, `${td}/${nsmgr}`, `${td}/registry`],
  });
}

const kernel = (name: string): Mechanism => ({ cls: "LOCAL", type: "KERNEL", parameters: { name } });
const vxlan: Mechanism = {
  cls: "REMOTE",
  type: "VXLAN",
  parameters: { src_ip: "198.18.0.1", dst_ip: "198.18.0.2", vni: "4242", dst_port: "4789" },
};

/** The connection as the nsmgr at `index` of `hops` holds it. */
function view(
  hops: string[],
  index: number,
  mechanism: Mechanism,
  state = State.UP,
  extra: Record<string, string> = {},
): Connection {
  return Connection.fromPartial({
    id: `${hops[index]}-conn`,
    networkService: "remote-svc",
    mechanism,
    context: {
      ipContext: { srcIpAddrs: ["169.254.21.2/32"], dstIpAddrs: ["169.254.21.1/32"] },
      extraContext: extra,
    },
    labels: { nodeName: "node1" },
    path: {
      index,
      pathSegments: hops.map((name, i) => ({
        name,
        id: i === 0 ? "nsc-1-0" : `${name}-conn`,
        token: "secret.jwt.token",
        expires: inAMinute,
        metrics: {},
      })),
    },
    networkServiceEndpointName: hops.at(-1)!,
    payload: "ETHERNET",
    state,
  });
}

const remote = ["nsc-1", "nsmgr-1", "fwd-1", "nsmgr-2", "fwd-2", "nse-remote"];
const registry = (): RegistrySnapshot => ({
  url: "unix:///run/registry.sock",
  status: "up",
  endpoints: [
    nse("fwd-1", ["forwarder"], "nsmgr-1", "node1", { p2p: "true" }),
    nse("fwd-2", ["forwarder"], "nsmgr-2", "node2", { p2p: "true" }),
    nse("nse-remote", ["remote-svc"], "nsmgr-2", "node2"),
  ],
  services: [{ name: "remote-svc", payload: "ETHERNET", matches: [], pathIds: [] }],
});
const watched = (name: string, connections: Connection[], status: NsmgrSnapshot["status"] = "up") => ({
  url: `unix:///run/${name}.sock`,
  name,
  status,
  connections,
});

function mesh(n1: Connection[], n2: Connection[], n1Status: NsmgrSnapshot["status"] = "up"): MeshSnapshot {
  return {
    registries: [registry()],
    nsmgrs: [watched("nsmgr-1", n1, n1Status), watched("nsmgr-2", n2)],
    forwarderService: "forwarder",
    traceUiUrl: "http://127.0.0.1:16686/",
  };
}

describe("dashboard model", () => {
  it("draws nodes, nsmgrs, forwarders, endpoints and a remote connection with its legs and path", () => {
    const g = buildGraph(mesh([view(remote, 1, kernel("nsm-1"))], [view(remote, 3, vxlan)]), 7);
    assert.equal(g.version, 7);
    assert.deepEqual(
      g.nodes.map((n) => [n.name, n.nsmgrs, n.forwarders, n.endpoints, n.clients]),
      [
        ["node1", ["nsmgr-1"], ["fwd-1"], [], ["nsc-1"]],
        ["node2", ["nsmgr-2"], ["fwd-2"], ["nse-remote"], []],
      ],
    );
    assert.deepEqual(
      g.nsmgrs.map((m) => [m.name, m.node, m.url, m.publicUrl, m.status, m.connections]),
      [
        ["nsmgr-1", "node1", "unix:///run/nsmgr-1.sock", "tcp://198.18.0.1:5001", "up", 1],
        ["nsmgr-2", "node2", "unix:///run/nsmgr-2.sock", "tcp://198.18.0.2:5001", "up", 1],
      ],
    );
    assert.deepEqual(g.forwarders[0], {
      name: "fwd-1",
      node: "node1",
      nsmgr: "nsmgr-1",
      url: "tcp://198.18.0.1:5001",
      labels: { nodeName: "node1", p2p: "true" },
      expires: new Date(inAMinute.seconds * 1000 + inAMinute.nanos / 1e6).toISOString(),
    });
    assert.deepEqual(g.services, [{ name: "remote-svc", payload: "ETHERNET", endpoints: ["nse-remote"] }]);

    assert.equal(g.connections.length, 1, "one connection, seen at two nsmgrs");
    const c = g.connections[0]!;
    assert.equal(c.id, "nsc-1-0", "keyed by the path's first segment id");
    assert.equal(c.state, "up");
    assert.equal(c.reason, "UP at nsmgr-1, nsmgr-2");
    assert.equal(c.mechanism, "veth+vxlan");
    assert.deepEqual(
      c.legs.map((l) => [l.from, l.to, l.nsmgr, l.kind, l.detail]),
      [
        ["nsc-1", "fwd-1", "nsmgr-1", "veth", "nsm-1"],
        ["fwd-1", "fwd-2", "nsmgr-2", "vxlan", "VNI 4242, 198.18.0.1 → 198.18.0.2"],
      ],
    );
    assert.deepEqual(
      c.path.map((s) => [s.name, s.role, s.url ?? ""]),
      [
        ["nsc-1", "client", ""],
        ["nsmgr-1", "nsmgr", "unix:///run/nsmgr-1.sock"],
        ["fwd-1", "forwarder", "tcp://198.18.0.1:5001"],
        ["nsmgr-2", "nsmgr", "unix:///run/nsmgr-2.sock"],
        ["fwd-2", "forwarder", "tcp://198.18.0.2:5001"],
        ["nse-remote", "endpoint", "tcp://198.18.0.2:5001"],
      ],
    );
    assert.deepEqual(c.addresses, { src: ["169.254.21.2/32"], dst: ["169.254.21.1/32"] });
    assert.equal(c.node, "node1");
    assert.equal(
      c.traceUrl,
      "http://127.0.0.1:16686/search?service=nsc-1&tags=%7B%22nsm.path.id%22%3A%22nsc-1-0%22%7D",
    );
    assert.ok(!JSON.stringify(g).includes("secret.jwt.token"), "no tokens in the model");
  });

  it("healing: DOWN at one nsmgr while UP at the other", () => {
    const g = buildGraph(mesh([view(remote, 1, kernel("nsm-1"), State.DOWN)], [view(remote, 3, vxlan)]), 1);
    assert.equal(g.connections[0]!.state, "healing");
    assert.equal(g.connections[0]!.reason, "DOWN at nsmgr-1; UP at nsmgr-2");
  });

  it("healing: gone from an nsmgr of its path that is watched and live", () => {
    const g = buildGraph(mesh([], [view(remote, 3, vxlan)]), 1);
    const c = g.connections[0]!;
    assert.equal(c.state, "healing");
    assert.match(c.reason, /gone from nsmgr-1/);
    assert.equal(c.path[0]!.name, "nsc-1", "the path comes from the view that remains");
  });

  it("healing: an nsmgr of its path is unreachable (its last view is stale)", () => {
    const g = buildGraph(
      mesh([view(remote, 1, kernel("nsm-1"))], [view(remote, 3, vxlan)], "unreachable"),
      1,
    );
    const c = g.connections[0]!;
    assert.equal(c.state, "healing");
    assert.match(c.reason, /nsmgr-1 unreachable/);
    assert.equal(c.views.find((v) => v.nsmgr === "nsmgr-1")!.stale, true);
    assert.equal(g.nsmgrs.find((m) => m.name === "nsmgr-1")!.status, "unreachable");
  });

  it("down: DOWN at every nsmgr that holds it", () => {
    const local = ["nsc-1", "nsmgr-1", "fwd-1", "nse-local"];
    const g = buildGraph(mesh([view(local, 1, kernel("nsm-1"), State.DOWN)], []), 1);
    assert.equal(g.connections[0]!.state, "down");
    assert.equal(g.connections[0]!.reason, "DOWN at nsmgr-1");
  });

  it("an nsmgr left off the path by a reselect does not count", () => {
    const now = ["nsc-1", "nsmgr-1", "fwd-1", "nse-local"];
    const g = buildGraph(mesh([view(now, 1, kernel("nsm-1"))], [view(remote, 3, vxlan, State.DOWN)]), 1);
    const c = g.connections[0]!;
    assert.equal(c.state, "up");
    assert.deepEqual(
      c.views.map((v) => [v.nsmgr, v.onPath]),
      [
        ["nsmgr-1", true],
        ["nsmgr-2", false],
      ],
    );
    assert.equal(c.mechanism, "veth");
  });

  it("a TF connection's KERNEL leg is a leg into the TF virtual network", () => {
    const tf = { "tf.vn-name": "default-domain:k8s-default:external", "tf.floating-ip": "198.51.100.7" };
    const hops = ["nsc-fip", "nsmgr-1", "fwd-tf-1", "nse-tf-1"];
    const g = buildGraph(mesh([view(hops, 1, kernel("nsm-fip"), State.UP, tf)], []), 1);
    const c = g.connections[0]!;
    assert.equal(c.mechanism, "tf-vn");
    assert.deepEqual(c.tf, tf);
    assert.equal(
      c.legs[0]!.detail,
      "VN default-domain:k8s-default:external, floating IP 198.51.100.7, nsm-fip",
    );
  });

  it("an nsmgr without a given name takes the registry's name for its URL; without either, its URL", () => {
    const s = mesh([], []);
    s.nsmgrs = [
      { url: "tcp://198.18.0.2:5001", status: "connecting", connections: [] },
      { url: "unix:///elsewhere.sock", status: "unreachable", error: "no", connections: [] },
    ];
    const g = buildGraph(s, 1);
    assert.deepEqual(
      g.nsmgrs.map((m) => [m.name, m.status]),
      [
        ["nsmgr-1", "unwatched"],
        ["nsmgr-2", "connecting"],
        ["unix:///elsewhere.sock", "unreachable"],
      ],
    );
  });

  it("the same snapshot gives the same graph", () => {
    const s = mesh([view(remote, 1, kernel("nsm-1"))], [view(remote, 3, vxlan)]);
    assert.deepEqual(buildGraph(s, 3, 1000), buildGraph(s, 3, 1000));
  });
});

describe("dashboard model parts", () => {
  it("mechanism names", () => {
    assert.deepEqual(nameMechanism(kernel("eth-x"), undefined), { kind: "veth", detail: "eth-x" });
    assert.deepEqual(nameMechanism(vxlan, undefined), {
      kind: "vxlan",
      detail: "VNI 4242, 198.18.0.1 → 198.18.0.2",
    });
    assert.equal(nameMechanism(kernel("x"), undefined, true).kind, "tf-vn", "a leg to a TF forwarder");
    assert.deepEqual(nameMechanism(undefined, undefined), { kind: "unknown", detail: "" });
    assert.equal(
      nameMechanism({ cls: "REMOTE", type: "WIREGUARD", parameters: {} }, undefined).kind,
      "wireguard",
    );
    assert.equal(tfContextOf({ "dns.x": "1" }), undefined);
    assert.deepEqual(tfContextOf({ "tf.vn-uuid": "u", other: "o" }), { "tf.vn-uuid": "u" });
  });

  it("state classification", () => {
    const v = (nsmgr: string, state: State, stale = false) => ({ nsmgr, state, stale });
    assert.equal(classify([v("a", State.UP), v("b", State.REFRESH_REQUESTED)], []).state, "up");
    assert.equal(classify([v("a", State.UP)], ["b"]).state, "healing");
    assert.equal(classify([v("a", State.UP), v("b", State.RESELECT_REQUESTED)], []).state, "healing");
    assert.equal(classify([v("a", State.UP, true)], []).state, "down", "only a stale view");
    assert.equal(classify([v("a", State.DOWN), v("b", State.DOWN)], []).state, "down");
    assert.deepEqual(classify([], []), { state: "down", reason: "no nsmgr holds it" });
  });

  it("trace link", () => {
    assert.equal(traceLink(undefined, "nsc", "id"), undefined);
    assert.equal(
      traceLink("https://jaeger.example/ui//", "nsc a", "nsc-0"),
      "https://jaeger.example/ui/search?service=nsc%20a&tags=%7B%22nsm.path.id%22%3A%22nsc-0%22%7D",
    );
  });

  it("registry records: registrar, merge across registries, expiry", () => {
    assert.equal(spiffeName("spiffe://td/ns/nsm-system/sa/nsmgr-x"), "nsmgr-x");
    assert.equal(spiffeName("nsmgr-y"), "nsmgr-y");
    const direct = endpoint({ name: "d", pathIds: [`${td}/cli`, `${td}/registry`] });
    assert.equal(registrarOf(direct), undefined, "registered directly, not through an nsmgr");
    const old = { ...nse("gone", ["s"], "nsmgr-1", "node1"), expirationTime: msToTimestamp(Date.now() - 1) };
    const a = nse("fwd-1", ["forwarder"], "nsmgr-1", "node1");
    const b = { ...nse("fwd-1", ["forwarder"], "nsmgr-2", "node2") };
    const merged = mergeRecords(
      [
        { url: "a", status: "up", endpoints: [a, old], services: [] },
        { url: "b", status: "up", endpoints: [b], services: [] },
      ],
      Date.now(),
    );
    assert.deepEqual(
      merged.endpoints.map((e) => [e.name, registrarOf(e)]),
      [["fwd-1", "nsmgr-1"]],
    );
    assert.deepEqual(registeredNsmgrs(registry().endpoints), [
      { name: "nsmgr-1", publicUrl: "tcp://198.18.0.1:5001", node: "node1" },
      { name: "nsmgr-2", publicUrl: "tcp://198.18.0.2:5001", node: "node2" },
    ]);
  });

  it("nsmgr targets: given (url or name=url) and discovered", () => {
    assert.deepEqual(
      parseNsmgrTargets("nsmgr-1=unix:///a/b.sock, tcp://127.0.0.1:5001,unix:///x=y.sock", "--f"),
      [
        { url: "unix:///a/b.sock", name: "nsmgr-1" },
        { url: "tcp://127.0.0.1:5001" },
        { url: "unix:///x=y.sock" },
      ],
    );
    assert.throws(() => parseNsmgrTargets("n=http://x", "--nsmgr-url"), /--nsmgr-url: "http:\/\/x" is not/);
    const registered = registeredNsmgrs(registry().endpoints);
    assert.deepEqual(discoveredTargets(registered, [{ url: "unix:///n1.sock", name: "nsmgr-1" }]), [
      { url: "tcp://198.18.0.2:5001", name: "nsmgr-2" },
    ]);
    assert.deepEqual(discoveredTargets(registered, [{ url: "tcp://198.18.0.2:5001" }]), [
      { url: "tcp://198.18.0.1:5001", name: "nsmgr-1" },
    ]);
  });
});
