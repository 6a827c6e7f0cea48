// Kernel forwarder end to end (issue 4): two nodes (namespaces joined by an underlay veth), pods as
// namespaces, real registry/nsmgr/forwarder/NSE processes, and real traffic (ping, TCP) through veth
// (local) and VXLAN (remote) connections. Everything is created with a per-run prefix and removed after.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { Netns, inNs, ip, links, ping } from "../helpers/netns.js";
import { eventually, startComponent, tempDir, type Component } from "../helpers/proc.js";

const net = new Netns();
const dir = tempDir("nsm-kernel-");
const procs: Component[] = [];
const sock = (n: string) => `unix://${join(dir.path, `${n}.sock`)}`;
const tcpScript = new URL("../helpers/tcp.mjs", import.meta.url).pathname;
let node1: string, node2: string, c1: string, c2: string, e1: string, e2: string;
let fwd1: Component;
const fwd1Args = () => [
  "forwarder",
  "kernel",
  "--name",
  "fwd-1",
  "--listen-on",
  sock("fwd-1"),
  "--connect-to",
  sock("nsmgr-1"),
  "--tunnel-ip",
  "198.18.0.1",
  "--orphan-grace",
  "3s",
];

const host = (cidr: string) => cidr.split("/")[0]!;

function client(name: string, ns: string): NsmClient {
  return new NsmClient({
    name,
    nsmgrUrl: sock("nsmgr-1"),
    netnsPath: net.path(ns),
    security: createSecurity({ name, insecure: true }),
  });
}

async function tcpTransfer(
  serverNs: string,
  serverIp: string,
  clientNs: string,
  bytes: number,
): Promise<number> {
  const srv = spawn(
    "ip",
    ["netns", "exec", serverNs, process.execPath, tcpScript, "server", serverIp, "5201"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    srv.stdout.once("data", () => resolve());
    srv.once("exit", (c) => reject(new Error(`tcp server exited ${c}`)));
  });
  try {
    const r = inNs(
      clientNs,
      [process.execPath, tcpScript, "client", serverIp, "5201", String(bytes)],
      15_000,
    );
    assert.equal(r.code, 0, r.out);
    return Number(r.out.trim());
  } finally {
    srv.kill();
  }
}

describe("kernel forwarder e2e", { timeout: 120_000 }, () => {
  before(async () => {
    node1 = net.add("node1");
    node2 = net.add("node2");
    c1 = net.add("c1");
    c2 = net.add("c2");
    e1 = net.add("e1");
    e2 = net.add("e2");
    net.wire(node1, "198.18.0.1/24", node2, "198.18.0.2/24");
    const reg = await startComponent(
      ["registry", "--store", "memory", "--listen-on", "tcp://198.18.0.1:5002"],
      "registry serving",
      {},
      20_000,
      node1,
    );
    procs.push(reg);
    for (const [n, node, addr] of [
      ["1", node1, "198.18.0.1"],
      ["2", node2, "198.18.0.2"],
    ] as const) {
      procs.push(
        await startComponent(
          [
            "nsmgr",
            "--name",
            `nsmgr-${n}`,
            "--listen-on",
            `${sock(`nsmgr-${n}`)},tcp://${addr}:5001`,
            "--registry-url",
            "tcp://198.18.0.1:5002",
          ],
          "nsmgr ready",
          { NODE_NAME: `node-${n}` },
          20_000,
          node,
        ),
      );
    }
    fwd1 = await startComponent(fwd1Args(), "forwarder ready", {}, 20_000, node1);
    procs.push(fwd1);
    procs.push(
      await startComponent(
        [
          "forwarder",
          "kernel",
          "--name",
          "fwd-2",
          "--listen-on",
          sock("fwd-2"),
          "--connect-to",
          sock("nsmgr-2"),
          "--tunnel-ip",
          "198.18.0.2",
        ],
        "forwarder ready",
        {},
        20_000,
        node2,
      ),
    );
    procs.push(
      await startComponent(
        [
          "nse",
          "icmp-responder",
          "--name",
          "nse-1",
          "--listen-on",
          sock("nse-1"),
          "--connect-to",
          sock("nsmgr-1"),
          "--services",
          "local-svc",
          "--cidr",
          "169.254.100.0/24",
          "--netns",
          net.path(e1),
        ],
        "endpoint ready",
      ),
    );
    procs.push(
      await startComponent(
        [
          "nse",
          "icmp-responder",
          "--name",
          "nse-2",
          "--listen-on",
          sock("nse-2"),
          "--connect-to",
          sock("nsmgr-2"),
          "--services",
          "remote-svc",
          "--cidr",
          "169.254.200.0/24",
          "--netns",
          net.path(e2),
        ],
        "endpoint ready",
      ),
    );
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    net.cleanup();
    dir.remove();
    assert.deepEqual(net.leftovers(), [], "no namespace of this run is left");
  });

  it("local: a veth pair carries ping and TCP both ways; Close removes it", async () => {
    const nsc = client("nsc-local", c1);
    const conn = await nsc.request({ service: "local-svc", ifname: "nsm-local" });
    const src = host(conn.context!.ipContext!.srcIpAddrs[0]!);
    const dst = host(conn.context!.ipContext!.dstIpAddrs[0]!);
    assert.deepEqual(links(c1), ["nsm-local"]);
    assert.equal(links(e1).length, 1);
    assert.ok(ping(c1, dst), `c1 → ${dst}`);
    assert.ok(ping(e1, src), `e1 → ${src}`);
    assert.equal(await tcpTransfer(e1, dst, c1, 4_000_000), 4_000_000);
    await nsc.closeAll();
    await eventually(
      () => links(c1).length === 0 && links(e1).length === 0,
      5000,
      "links removed after Close",
    );
    assert.equal(ip(["-n", c1, "-o", "addr", "show", "scope", "global"]).trim(), "");
    assert.equal(ip(["-n", c1, "route", "show"]).trim(), "");
  });

  it("remote: VXLAN over the underlay carries ping and TCP; Close removes both ends", async () => {
    const nsc = client("nsc-remote", c1);
    const conn = await nsc.request({ service: "remote-svc", ifname: "nsm-remote" });
    assert.equal(conn.path!.pathSegments.length, 6);
    const dst = host(conn.context!.ipContext!.dstIpAddrs[0]!);
    const src = host(conn.context!.ipContext!.srcIpAddrs[0]!);
    assert.match(
      ip(["-n", c1, "-d", "link", "show", "nsm-remote"]),
      /vxlan id \d+ remote 198\.18\.0\.2 local 198\.18\.0\.1/,
    );
    assert.ok(ping(c1, dst), `c1 → ${dst} over VXLAN`);
    assert.ok(ping(e2, src), `e2 → ${src} over VXLAN`);
    assert.equal(await tcpTransfer(e2, dst, c1, 4_000_000), 4_000_000);
    await nsc.closeAll();
    await eventually(() => links(c1).length === 0 && links(e2).length === 0, 5000, "VXLAN links removed");
    assert.deepEqual(
      links(node1).filter((l) => !l.startsWith(net.prefix)),
      [],
    );
    assert.deepEqual(
      links(node2).filter((l) => !l.startsWith(net.prefix)),
      [],
    );
  });

  it("a client process that exits (SIGTERM) leaves nothing behind", async () => {
    const nsc = await startComponent(
      [
        "nsc",
        "--name",
        "nsc-proc",
        "--connect-to",
        sock("nsmgr-1"),
        "--service",
        "kernel://local-svc/nsm-proc",
        "--netns",
        net.path(c2),
      ],
      "nsc connected",
    );
    assert.deepEqual(links(c2), ["nsm-proc"]);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(nsc.proc.exitCode, null, "nsc keeps running while connected");
    assert.equal(await nsc.stop(), 0);
    await eventually(() => links(c2).length === 0, 5000, "links removed after the client exited");
  });

  it("a forwarder restarted while connections live keeps them and removes only true orphans", async () => {
    const nsc = client("nsc-restart", c1);
    const conn = await nsc.request({ service: "local-svc", ifname: "nsm-keep" });
    const dst = host(conn.context!.ipContext!.dstIpAddrs[0]!);
    // An orphan: tagged by fwd-1 for a connection nobody will refresh.
    ip(["-n", c1, "link", "add", "nsm-orphan", "type", "bridge"]);
    ip(["-n", c1, "link", "set", "nsm-orphan", "alias", "nsm:fwd-1:no-such-connection"]);
    await fwd1.kill();
    assert.ok(ping(c1, dst), "traffic flows while the forwarder is down");
    fwd1 = await startComponent(fwd1Args(), "forwarder ready", {}, 20_000, node1);
    procs.push(fwd1);
    // The client refreshes through the new forwarder, which adopts the veth pair.
    const refreshed = await nsc.request({ service: "local-svc", ifname: "nsm-keep", id: conn.id });
    assert.equal(refreshed.context!.ipContext!.dstIpAddrs[0], conn.context!.ipContext!.dstIpAddrs[0]);
    await eventually(() => !links(c1).includes("nsm-orphan"), 8000, "orphan removed after the grace period");
    assert.ok(links(c1).includes("nsm-keep"), "the live connection's interface is kept");
    assert.ok(ping(c1, dst), "and still carries traffic");
    await nsc.closeAll();
    await eventually(() => links(c1).length === 0, 5000, "links removed after Close");
  });

  describe("bad input", () => {
    it("an interface name over 15 characters → INVALID_ARGUMENT, nothing created", async () => {
      const nsc = client("nsc-longname", c1);
      await assert.rejects(
        nsc.request({ service: "local-svc", ifname: "this-name-is-too-long" }),
        (e) => (e as { code: status }).code === status.INVALID_ARGUMENT,
      );
      assert.deepEqual(links(c1), []);
      await nsc.closeAll();
    });

    it("a client namespace that does not exist → INVALID_ARGUMENT naming it", async () => {
      const gone = net.add("gone");
      const nsc = client("nsc-gone", gone);
      ip(["netns", "del", gone]);
      await assert.rejects(
        nsc.request({ service: "local-svc" }),
        (e) =>
          (e as { code: status }).code === status.INVALID_ARGUMENT && /namespace/.test((e as Error).message),
      );
      await nsc.closeAll();
    });

    it("an interface name already taken in the client namespace → ALREADY_EXISTS, no partial state", async () => {
      ip(["-n", c1, "link", "add", "nsm-taken", "type", "bridge"]);
      const nsc = client("nsc-taken", c1);
      await assert.rejects(
        nsc.request({ service: "local-svc", ifname: "nsm-taken" }),
        (e) =>
          (e as { code: status }).code === status.ALREADY_EXISTS && /nsm-taken/.test((e as Error).message),
      );
      assert.deepEqual(links(c1), ["nsm-taken"]);
      assert.deepEqual(links(e1), [], "nothing left on the endpoint side");
      ip(["-n", c1, "link", "del", "nsm-taken"]);
      await nsc.closeAll();
    });

    it("an address already used by another interface → ALREADY_EXISTS, no partial state", async () => {
      const nsc = client("nsc-addr", c1);
      const first = await nsc.request({ service: "local-svc", ifname: "nsm-a" });
      const nextSrc = first.context!.ipContext!.srcIpAddrs[0]!.replace(
        /\.(\d+)\/32$/,
        (_m, d: string) => `.${Number(d) + 2}/32`,
      );
      await nsc.closeAll();
      await eventually(() => links(c1).length === 0, 5000, "clean");
      ip(["-n", c1, "link", "add", "squatter", "type", "bridge"]);
      ip(["-n", c1, "addr", "add", nextSrc, "dev", "squatter"]);
      const nsc2 = client("nsc-addr2", c1);
      // The endpoint hands out the next free pair; make it collide by asking until it does (at most a few).
      let hit = false;
      for (let i = 0; i < 6 && !hit; i++) {
        try {
          await nsc2.request({ service: "local-svc", ifname: `nsm-b${i}` });
        } catch (e) {
          hit =
            (e as { code: status }).code === status.ALREADY_EXISTS &&
            /in use|EADDRINUSE/i.test((e as Error).message);
        }
      }
      await nsc2.closeAll();
      assert.ok(hit, `an address collision with ${nextSrc} was reported`);
      await eventually(() => links(c1).join() === "squatter", 5000, "only the squatter is left");
      ip(["-n", c1, "link", "del", "squatter"]);
    });
  });
});
