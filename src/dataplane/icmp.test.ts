// Real kernel tests of ICMP echo from inside a namespace. Two namespaces made here with a per-run prefix,
// joined by a veth created directly inside them (nothing in the root namespace), addresses 169.254.x.y/32
// with host routes, IPv6 only on the veth's link-local fe80::/64 (addrgenmode none + our own fe80::… with
// nodad). Everything is deleted in `after`, and the last test checks that nothing (namespace, fd) leaked.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { readdirSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Dataplane, DataplaneError, ping } from "./index.js";

const isRoot = process.getuid?.() === 0;
const P = `nsmic${randomBytes(2).toString("hex")}`; // 9 chars
const NET = `169.254.${randomInt(1, 255)}`;
const A4 = `${NET}.1`;
const B4 = `${NET}.2`;
const A6 = "fe80::a:1";
const B6 = "fe80::a:2";
const nsA = `${P}-a`;
const nsB = `${P}-b`;
const vA = `${P}-va`;
const vB = `${P}-vb`;
const pathA = `/var/run/netns/${nsA}`;
const made: string[] = [];

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function buildPair(): void {
  for (const n of [nsA, nsB]) {
    sh("ip", "netns", "add", n);
    made.push(n);
    sh("ip", "-n", n, "link", "set", "lo", "up");
  }
  sh("ip", "-n", nsA, "link", "add", vA, "type", "veth", "peer", "name", vB, "netns", nsB);
  for (const [ns, dev, mine, peer, mine6] of [
    [nsA, vA, A4, B4, A6],
    [nsB, vB, B4, A4, B6],
  ] as const) {
    sh("ip", "-n", ns, "link", "set", dev, "addrgenmode", "none");
    sh("ip", "-n", ns, "addr", "add", `${mine}/32`, "dev", dev);
    sh("ip", "-n", ns, "-6", "addr", "add", `${mine6}/64`, "dev", dev, "nodad");
    sh("ip", "-n", ns, "link", "set", dev, "up");
    sh("ip", "-n", ns, "route", "add", `${peer}/32`, "dev", dev);
  }
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DataplaneError, `expected DataplaneError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  });
}

describe(`icmp ping (real kernel, namespaces ${P}-*)`, { skip: !isRoot && "needs root" }, () => {
  let fdsBefore = 0;
  const dp = new Dataplane();

  before(() => {
    fdsBefore = openFds();
    buildPair();
  });
  after(() => {
    dp.close();
    for (const n of made.splice(0)) {
      try {
        sh("ip", "netns", "del", n);
      } catch {
        // already gone
      }
    }
  });

  it("IPv4: 4 requests, 4 replies, sub-10ms RTTs (raw socket: ping_group_range is '1 0' in a new netns)", async () => {
    const r = await ping(pathA, { src: A4, dst: B4 });
    assert.equal(r.sent, 4);
    assert.equal(r.received, 4);
    assert.equal(r.rttMs.length, 4);
    assert.equal(r.socket, "raw");
    assert.deepEqual(r.errors, []);
    for (const rtt of r.rttMs) assert.ok(rtt >= 0 && rtt < 10, `rtt ${rtt}`);
    // From b to a through a NetnsHandle, fast: 3 packets 5 ms apart.
    const b = dp.netns(`/var/run/netns/${nsB}`);
    const rb = await ping(b, { src: B4, dst: A4, count: 3, intervalMs: 5 });
    assert.equal(rb.received, 3);
  });

  it("stopAfterReplies ends at the first reply", async () => {
    const t0 = performance.now();
    const r = await ping(pathA, { src: A4, dst: B4, stopAfterReplies: 1 });
    assert.equal(r.sent, 1);
    assert.equal(r.received, 1);
    assert.ok(performance.now() - t0 < 100, "one round trip, not the 750 ms schedule");
  });

  it("IPv6 link-local (fe80::/64 on the test veth), raw socket; zone by name or index", async () => {
    const r = await ping(pathA, { src: `${A6}%${vA}`, dst: B6, count: 2, intervalMs: 5 });
    assert.equal(r.received, 2);
    assert.equal(r.socket, "raw");
    assert.equal(r.src, `${A6}%${vA}`);
    const index = JSON.parse(sh("ip", "-j", "-n", nsA, "link", "show", vA)) as { ifindex: number }[];
    const r2 = await ping(pathA, {
      src: `${A6}%${index[0]?.ifindex}`,
      dst: `${B6}%${index[0]?.ifindex}`,
      count: 1,
    });
    assert.equal(r2.received, 1);
  });

  it("datagram (ping) sockets: EACCES while ping_group_range forbids them, used once it allows them", async () => {
    await rejectsWith(ping(pathA, { src: A4, dst: B4, socket: "dgram" }), "EACCES", /ping_group_range/);
    sh("ip", "netns", "exec", nsA, "sysctl", "-qw", "net.ipv4.ping_group_range=0 0");
    try {
      const r4 = await ping(pathA, { src: A4, dst: B4, count: 2, intervalMs: 5 });
      assert.equal(r4.socket, "dgram");
      assert.equal(r4.received, 2);
      const r6 = await ping(pathA, { src: `${A6}%${vA}`, dst: B6, count: 2, intervalMs: 5, socket: "dgram" });
      assert.equal(r6.socket, "dgram");
      assert.equal(r6.received, 2);
    } finally {
      sh("ip", "netns", "exec", nsA, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0");
    }
  });

  it("typed errors: bad addresses, families, zones, missing namespace, source not in the namespace", async () => {
    await rejectsWith(ping(pathA, { src: "169.254.1", dst: B4 }), "EINVAL", /source "169.254.1"/);
    await rejectsWith(ping(pathA, { src: A4, dst: "nope" }), "EINVAL", /destination/);
    await rejectsWith(ping(pathA, { src: A4, dst: B6 }), "EINVAL", /different families/);
    await rejectsWith(ping(pathA, { src: `${A4}%${vA}`, dst: B4 }), "EINVAL", /zone/);
    await rejectsWith(ping(pathA, { src: A6, dst: B6 }), "EINVAL", /needs a zone/);
    await rejectsWith(ping(pathA, { src: `${A6}%nosuchdev`, dst: B6 }), "ENODEV", /nosuchdev/);
    await rejectsWith(ping(pathA, { src: A4, dst: B4, count: 0 }), "EINVAL", /count/);
    await rejectsWith(ping(`/var/run/netns/${P}-missing`, { src: A4, dst: B4 }), "ENOENT", /missing/);
    await rejectsWith(ping(pathA, { src: B4, dst: A4 }), "EADDRNOTAVAIL", /cannot bind to/);
  });

  it("abort rejects with the signal's reason", async () => {
    const ac = new AbortController();
    const p = ping(pathA, { src: A4, dst: `${NET}.99`, timeoutMs: 5000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error("stop now")), 20);
    await assert.rejects(p, /stop now/);
  });

  it("no answer: 0 replies after the timeout, and the event loop keeps ticking meanwhile", async () => {
    sh("ip", "-n", nsB, "link", "set", vB, "down");
    let ticks = 0;
    let last = performance.now();
    let maxGap = 0;
    const iv = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    try {
      const t0 = performance.now();
      const r = await ping(pathA, { src: A4, dst: B4, timeoutMs: 1000 });
      const took = performance.now() - t0;
      assert.equal(r.received, 0);
      assert.equal(r.sent, 4);
      assert.ok(took >= 990 && took < 1300, `took ${took} ms`);
      assert.ok(ticks >= 50, `only ${ticks} ticks of a 10 ms interval in ${took} ms`);
      assert.ok(maxGap < 100, `event loop stalled for ${maxGap} ms`);
    } finally {
      clearInterval(iv);
      sh("ip", "-n", nsB, "link", "set", vB, "up");
      sh("ip", "-n", nsB, "route", "replace", `${A4}/32`, "dev", vB); // IPv4 dropped it with the link
    }
  });

  it("after the veth is deleted: the source address is gone (EADDRNOTAVAIL)", async () => {
    sh("ip", "-n", nsA, "link", "del", vA);
    await rejectsWith(ping(pathA, { src: A4, dst: B4 }), "EADDRNOTAVAIL");
  });

  it("leaves nothing behind: sockets closed, namespaces deleted", () => {
    dp.close();
    for (const n of made.splice(0)) sh("ip", "netns", "del", n);
    assert.equal(openFds(), fdsBefore, "every socket and namespace fd was closed");
    const left = sh("ip", "netns", "list")
      .split("\n")
      .filter((l) => l.startsWith(P));
    assert.deepEqual(left, []);
  });
});
