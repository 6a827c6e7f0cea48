// Conformance of nsm-ts with upstream NSM (sdk v1.18.0 behaviour), played by the Go interop peer
// (test/interop/peer, built by scripts/build-interop-peer.sh). Everything runs with X.509-SVIDs of one test
// trust domain, mTLS on every link (unix sockets included), upstream-shaped tokens and the default policies:
//
//   a. Go registry-suite → nsm registry (tcp)
//   b. Go client (kernel, own netns) → nsm nsmgr (unix) → nsm kernel forwarder → nsm icmp-responder, with ping
//   c. nsm nsc → nsm nsmgr → Go endpoint registered through that nsmgr (its unix URL passed as a descriptor)
//   d. nsm nsc → Go nsmgr (insists on descriptors) → nsm icmp-responder on a unix socket
//   e. Go client → Go nsmgr → nsm icmp-responder (unix: descriptors both ways; tcp: tokens and policies only)
//
// Namespaces carry a per-run prefix and are deleted after; traffic stays between test namespaces; the
// point-to-point addresses are 169.254.0.0/16.
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { TrustDomainCa } from "../../src/security/ca.js";
import type { IdentityFiles } from "../../src/security/identity.js";
import { Netns, links, ping } from "../helpers/netns.js";
import { eventually, runNsm, startComponent, tempDir, type Component } from "../helpers/proc.js";
import {
  claims,
  ensurePeer,
  inodeUrl,
  pathProblems,
  runPeer,
  startPeer,
  svidFlags,
  type PeerConnection,
  type PeerEvent,
  type PeerProc,
} from "./helpers.js";

/** Rows that cannot pass until nsm-ts passes descriptors (SCM_RIGHTS) on its unix sockets. */

const td = "interop.test";
const id = (n: string) => `spiffe://${td}/${n}`;
const host = (cidr: string | undefined) => (cidr ?? "").split("/")[0]!;
const conn = (e: PeerEvent) => e.connection as PeerConnection;

let ca: TrustDomainCa;
const dir = tempDir("nsm-interop-");
const net = new Netns("nsio");
const sock = (n: string) => `unix://${join(dir.path, `${n}.sock`)}`;
const comps: Component[] = [];
const peers: PeerProc[] = [];

async function svid(name: string): Promise<IdentityFiles> {
  const f = await ca.writeFiles(join(dir.path, "svid"), name, id(name));
  return { certFile: f.certFile, keyFile: f.keyFile, caFile: f.caFile };
}

/** Starts an nsm component with an SVID for spiffe://interop.test/<name>. */
async function nsm(name: string, args: string[], ready: string, netns?: string): Promise<Component> {
  const c = await startComponent(
    [...args, ...svidFlags(await svid(name))],
    ready,
    {},
    { timeoutMs: 30_000, netns },
  );
  comps.push(c);
  return c;
}

/** Starts a Go peer subcommand with an SVID for spiffe://interop.test/<name> and waits for it to be ready. */
async function peer(name: string, args: string[], netns?: string): Promise<PeerProc> {
  const p = startPeer([...args, ...svidFlags(await svid(name))], { netns });
  peers.push(p);
  await p.waitFor((e) => e.event === "ready", 30_000, `${name} ready`);
  return p;
}

/** `nsm nse icmp-responder` named `name`, serving `service` from `cidr` in the namespace at `netns`. */
function icmpResponder(
  name: string,
  listenOn: string,
  connectTo: string,
  service: string,
  cidr: string,
  netns: string,
): Promise<Component> {
  const args = ["--listen-on", listenOn, "--connect-to", connectTo, "--services", service, "--cidr", cidr];
  return nsm(name, ["nse", "icmp-responder", "--name", name, ...args, "--netns", netns], "endpoint ready");
}

/** An `nsm registry` (memory store) on a free loopback port, for endpoints to register with directly. */
function ownRegistry(name: string): Promise<Component> {
  const args = ["--name", name, "--store", "memory", "--listen-on", "tcp://127.0.0.1:0"];
  return nsm(name, ["registry", ...args], "registry serving");
}

/** What the Go nsmgr reported about a failed request (waiting a little: it may report after its caller gave up). */
async function nsmgrSays(mgr: PeerProc): Promise<string> {
  const e = await mgr
    .waitFor((x) => x.event === "request-failed" || x.event === "refused", 3000, "a failure report")
    .catch(() => undefined);
  return e ? JSON.stringify(e) : "nothing";
}

/** registry (tcp, in `node`), nsmgr (unix + tcp, in `node`) and optionally a kernel forwarder, named <tag>-*. */
async function controlPlane(
  tag: string,
  node: string,
  forwarder: boolean,
  registryArgs: string[] = [],
): Promise<{ registry: string }> {
  const reg = await nsm(
    `${tag}-registry`,
    [
      "registry",
      "--name",
      `${tag}-registry`,
      "--store",
      "memory",
      "--listen-on",
      "tcp://127.0.0.1:0",
      ...registryArgs,
    ],
    "registry serving",
    node,
  );
  await nsm(
    `${tag}-nsmgr`,
    [
      "nsmgr",
      "--name",
      `${tag}-nsmgr`,
      "--listen-on",
      `${sock(`${tag}-nsmgr`)},tcp://127.0.0.1:0`,
      "--registry-url",
      reg.urls[0]!,
    ],
    "nsmgr ready",
    node,
  );
  if (forwarder)
    await nsm(
      `${tag}-fwd`,
      [
        "forwarder",
        "kernel",
        "--name",
        `${tag}-fwd`,
        "--listen-on",
        sock(`${tag}-fwd`),
        "--connect-to",
        sock(`${tag}-nsmgr`),
      ],
      "forwarder ready",
      node,
    );
  return { registry: reg.urls[0]! };
}

describe("interop with upstream NSM (Go peer), mTLS", { timeout: 300_000 }, () => {
  before(async () => {
    ensurePeer();
    ca = await TrustDomainCa.create(td);
  });

  after(async () => {
    for (const p of peers.reverse()) await p.stop();
    for (const c of comps.reverse()) await c.stop().catch(() => undefined);
    net.cleanup();
    dir.remove();
    assert.deepEqual(net.leftovers(), [], "no namespace of this run is left");
  });

  it("a. Go registry-suite → nsm registry (tcp)", async () => {
    const reg = await ownRegistry("a-registry");
    const other = await svid("a-intruder");
    const r = await runPeer(
      [
        "registry-suite",
        "--registry",
        reg.urls[0]!,
        ...svidFlags(await svid("a-suite")),
        "--other-cert-file",
        other.certFile,
        "--other-key-file",
        other.keyFile,
        "--other-ca-file",
        other.caFile,
      ],
      { timeoutMs: 120_000 },
    );
    const cases = r.events.filter((e) => e.case !== undefined);
    const failed = cases.filter((e) => e.ok !== true).map((e) => `${e.case}: ${String(e.detail)}`);
    assert.deepEqual(
      failed,
      [],
      `registry cases that differ from upstream:\n${failed.join("\n")}\n${r.stderr}`,
    );
    assert.ok(cases.length >= 13, `ran ${cases.length} cases`);
    assert.equal(r.code, 0, r.stderr);
  });

  it("b. Go client (kernel) → nsm nsmgr → nsm kernel forwarder → nsm icmp-responder: connected, every hop signed, ping", async () => {
    const node = net.add("bn");
    const c = net.add("bc");
    const e = net.add("be");
    await controlPlane("b", node, true);
    await icmpResponder("b-nse", sock("b-nse"), sock("b-nsmgr"), "b-svc", "169.254.140.0/24", net.path(e));
    const client = startPeer(
      [
        "client",
        "--connect-to",
        sock("b-nsmgr"),
        "--service",
        "b-svc",
        "--name",
        "b-nsc",
        "--ifname",
        "nsm-b",
        "--hold",
        "60s",
        "--refresh-every",
        "1s",
        ...svidFlags(await svid("b-nsc")),
      ],
      { netns: c },
    );
    peers.push(client);
    const connected = conn(await client.waitFor((x) => x.event === "connected", 30_000, "connected"));
    assert.deepEqual(
      connected.path!.path_segments!.map((s) => s.name),
      ["b-nsc", "b-nsmgr", "b-fwd", "b-nse"],
    );
    assert.deepEqual(pathProblems(connected, ["b-nsc", "b-nsmgr", "b-fwd", "b-nse"].map(id)), []);
    assert.equal(connected.id, "b-nsc-0");
    assert.equal(connected.mechanism?.type, "KERNEL");
    // A refresh (the same connection again, as upstream's refresh client sends it) is answered with the same ids.
    const refreshed = conn(await client.waitFor((x) => x.event === "refreshed", 10_000, "a refresh"));
    assert.deepEqual(
      refreshed.path!.path_segments!.map((s) => s.id),
      connected.path!.path_segments!.map((s) => s.id),
    );
    assert.deepEqual(pathProblems(refreshed, ["b-nsc", "b-nsmgr", "b-fwd", "b-nse"].map(id)), []);
    const dst = host(connected.context?.ip_context?.dst_ip_addrs?.[0]);
    const src = host(connected.context?.ip_context?.src_ip_addrs?.[0]);
    assert.deepEqual(links(c), ["nsm-b"]);
    assert.ok(ping(c, dst), `client → ${dst}`);
    assert.ok(ping(e, src), `endpoint → ${src}`);
    assert.equal(await client.stop(), 0, client.stderr.join(""));
    assert.ok(client.events.some((x) => x.event === "closed"));
    await eventually(() => links(c).length === 0 && links(e).length === 0, 5000, "links removed after Close");
  });

  describe("c0. Go endpoint registering through nsm nsmgr (unix socket, its URL as a descriptor)", () => {
    let ep: PeerProc;
    before(async () => {
      const node = net.add("rn");
      await controlPlane("r", node, false, ["--expire-period", "3s"]);
      ep = await peer("r-nse", [
        "endpoint",
        "--listen-on",
        sock("r-nse"),
        "--name",
        "r-nse",
        "--service",
        "r-svc",
        "--register-to",
        sock("r-nsmgr"),
      ]);
    });

    it("NS then NSE registered, path_ids [nse, nsmgr, registry], refreshed before expiry, unregistered on SIGTERM", async () => {
      const ns = ep.events.find((x) => x.event === "registered-ns")!;
      const nse = ep.events.find((x) => x.event === "registered")!;
      const ids = ["r-nse", "r-nsmgr", "r-registry"].map(id);
      assert.deepEqual((ns.ns as { path_ids?: string[] }).path_ids, ids);
      assert.equal(nse.sentFd, true, "the unix URL went as inode:// plus the socket's descriptor");
      const rec = nse.nse as { url: string; path_ids?: string[]; expiration_time?: string };
      assert.equal(rec.url, sock("r-nse"), "the answer's inode:// URL translates back to ours");
      assert.deepEqual(rec.path_ids, ids);
      assert.ok(rec.expiration_time, "expiration_time set by the registry's expire");
      const refreshed = await ep.waitFor((x) => x.event === "registration-refreshed", 10_000, "a refresh");
      assert.deepEqual((refreshed.nse as { path_ids?: string[] }).path_ids, ids);
      assert.equal(await ep.stop(), 0);
      assert.ok(
        ep.events.some((x) => x.event === "unregistered"),
        `unregistered: ${JSON.stringify(ep.events.at(-1))}`,
      );
    });

    it(
      "the nsmgr answers the registration path as upstream's does: [nse, nsmgr, registry], index 0",
      {
        todo:
          "nsm-ts nsmgr answers only its own 2-segment path; upstream's nsmgr shares one path object between " +
          "its registry server and its client to the registry (sdk grpcmetadata nse_client.go copies the " +
          "registry's answer into it), so the header has 3 segments",
      },
      () => {
        const path = ep.events.find((x) => x.event === "registered")!.path as {
          Index: number;
          PathSegments: { token: string }[];
        };
        assert.equal(path.Index, 0);
        assert.deepEqual(
          path.PathSegments.map((s) => claims(s.token).sub),
          ["r-nse", "r-nsmgr", "r-registry"].map(id),
        );
      },
    );
  });

  it("c. nsm nsc → nsm nsmgr → Go endpoint registered through the nsmgr (unix URL as a descriptor)", async () => {
    const node = net.add("cn");
    const c = net.add("cc");
    const e = net.add("ce");
    await controlPlane("c", node, true);
    const nse = await peer(
      "c-nse",
      [
        "endpoint",
        "--listen-on",
        sock("c-nse"),
        "--name",
        "c-nse",
        "--service",
        "c-svc",
        "--register-to",
        sock("c-nsmgr"),
        "--cidr",
        "169.254.150.0/24",
      ],
      e,
    );
    const registered = nse.events.find((x) => x.event === "registered")!;
    assert.equal(registered.sentFd, true);
    assert.equal((registered.nse as { url: string }).url, sock("c-nse"), "the nsmgr answers the URL we sent");
    const nsc = await nsm(
      "c-nsc",
      [
        "nsc",
        "--name",
        "c-nsc",
        "--connect-to",
        sock("c-nsmgr"),
        "--service",
        "kernel://c-svc/nsm-c",
        "--netns",
        net.path(c),
      ],
      "nsc connected",
    );
    const req = conn(await nse.waitFor((x) => x.event === "request", 10_000, "the endpoint's Request"));
    assert.deepEqual(pathProblems(req, ["c-nsc", "c-nsmgr", "c-fwd", "c-nse"].map(id)), []);
    const dst = host(req.context?.ip_context?.dst_ip_addrs?.[0]);
    assert.deepEqual(links(c), ["nsm-c"]);
    assert.ok(ping(c, dst), `client → Go endpoint's namespace ${dst}`);
    assert.equal(await nsc.stop(), 0);
    await nse.waitFor((x) => x.event === "close" && x.known === true, 10_000, "the endpoint's Close");
    assert.equal(await nse.stop(), 0);
    assert.ok(
      nse.events.some((x) => x.event === "unregistered"),
      "unregistered on SIGTERM",
    );
  });

  it("d. nsm nsc → Go nsmgr (insists on descriptors) → nsm icmp-responder (unix)", async () => {
    const c = net.add("dc");
    const e = net.add("de");
    const reg = await ownRegistry("d-registry");
    await icmpResponder("d-nse", sock("d-nse"), reg.urls[0]!, "d-svc", "169.254.160.0/24", net.path(e));
    const mgr = await peer("d-nsmgr", [
      "nsmgr",
      "--listen-on",
      sock("d-nsmgr"),
      "--endpoint",
      sock("d-nse"),
      "--name",
      "d-nsmgr",
    ]);
    const r = await runNsm([
      "nsc",
      "--name",
      "d-nsc",
      "--connect-to",
      sock("d-nsmgr"),
      "--service",
      "d-svc",
      "--netns",
      net.path(c),
      "--once",
      "--no-heal",
      "--request-timeout",
      "5s",
      ...svidFlags(await svid("d-nsc")),
    ]);
    if (r.code !== 0) assert.fail(`nsm nsc failed; the Go nsmgr says ${await nsmgrSays(mgr)}\n${r.stderr}`);
    const req = await mgr.waitFor((x) => x.event === "request", 5000, "the nsmgr's request");
    assert.equal(req.clientNetnsFdOK, true, "the client's namespace arrived as a descriptor");
    assert.equal((req.clientFds as { url: string }[])[0]?.url, inodeUrl(net.path(c)));
    assert.equal(req.endpointNetnsFdOK, true, "the endpoint's namespace arrived as a descriptor");
    assert.equal((req.endpointFd as { url: string }).url, inodeUrl(net.path(e)));
    assert.deepEqual(pathProblems(conn(req), ["d-nsc", "d-nsmgr", "d-nsmgr", "d-nse"].map(id)), []);
  });

  it("e. Go client → Go nsmgr → nsm icmp-responder (unix: descriptors both ways)", async () => {
    const c = net.add("ec");
    const e = net.add("ee");
    const reg = await ownRegistry("e-registry");
    await icmpResponder("e-nse", sock("e-nse"), reg.urls[0]!, "e-svc", "169.254.170.0/24", net.path(e));
    const mgr = await peer("e-nsmgr", [
      "nsmgr",
      "--listen-on",
      sock("e-nsmgr"),
      "--endpoint",
      sock("e-nse"),
      "--name",
      "e-nsmgr",
    ]);
    const r = await runPeer(
      [
        "client",
        "--connect-to",
        sock("e-nsmgr"),
        "--service",
        "e-svc",
        "--name",
        "e-nsc",
        "--timeout",
        "5s",
        ...svidFlags(await svid("e-nsc")),
      ],
      { netns: c },
    );
    if (r.code !== 0)
      assert.fail(
        `the Go client failed: ${JSON.stringify(r.events)}; the Go nsmgr says ${await nsmgrSays(mgr)}`,
      );
    const connected = conn(r.events.find((x) => x.event === "connected")!);
    assert.deepEqual(pathProblems(connected, ["e-nsc", "e-nsmgr", "e-nsmgr", "e-nse"].map(id)), []);
    const req = await mgr.waitFor((x) => x.event === "request", 5000, "the nsmgr's request");
    assert.equal(req.endpointNetnsFdOK, true, "the endpoint's namespace arrived as a descriptor");
    assert.equal((req.endpointFd as { url: string }).url, inodeUrl(net.path(e)));
  });

  it("e (tcp). Go client → Go nsmgr → nsm icmp-responder on tcp: tokens and policies both ways, no descriptors", async () => {
    const e = net.add("et");
    const reg = await ownRegistry("et-registry");
    const nse = await icmpResponder(
      "et-nse",
      "tcp://127.0.0.1:0",
      reg.urls[0]!,
      "et-svc",
      "169.254.180.0/24",
      net.path(e),
    );
    const mgr = await peer("et-nsmgr", [
      "nsmgr",
      "--listen-on",
      sock("et-nsmgr"),
      "--endpoint",
      nse.urls[0]!,
      "--name",
      "et-nsmgr",
    ]);
    const r = await runPeer([
      "client",
      "--connect-to",
      sock("et-nsmgr"),
      "--service",
      "et-svc",
      "--name",
      "et-nsc",
      "--hold",
      "1s",
      "--refresh-every",
      "400ms",
      ...svidFlags(await svid("et-nsc")),
    ]);
    if (r.code !== 0)
      assert.fail(
        `the Go client failed: ${JSON.stringify(r.events)}; the Go nsmgr says ${await nsmgrSays(mgr)}`,
      );
    const connected = conn(r.events.find((x) => x.event === "connected")!);
    assert.deepEqual(pathProblems(connected, ["et-nsc", "et-nsmgr", "et-nsmgr", "et-nse"].map(id)), []);
    assert.ok(
      r.events.some((x) => x.event === "refreshed"),
      "a refresh through nsm-ts is accepted too",
    );
    assert.ok(r.events.some((x) => x.event === "closed"));
  });
});
