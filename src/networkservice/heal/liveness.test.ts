// Liveness check (spec §3.1) against a real data plane: a "client" namespace and an "endpoint" namespace made
// here with a per-run prefix, joined by a veth created inside them; 169.254.x.y/32 addresses with host routes,
// IPv6 only on the veth's link-local fe80::/64. Deleted in `after`; the last test checks nothing is left.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { State, type Connection } from "../../api/connection.js";
import { LivenessMonitor, kernelLivenessCheck, livenessDefaults, type LivenessReport } from "./liveness.js";

const isRoot = process.getuid?.() === 0;
const P = `nsmlv${randomBytes(2).toString("hex")}`; // 9 chars
const NET = `169.254.${randomInt(1, 255)}`;
const nsC = `${P}-c`; // client
const nsE = `${P}-e`; // endpoint
const vC = `${P}-vc`;
const vE = `${P}-ve`;
const pathC = `/var/run/netns/${nsC}`;
const made: string[] = [];

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Client side: .1 and .3 (+ fe80::c:1); endpoint side: .2 and .4 (+ fe80::c:2). */
function buildPair(): void {
  for (const n of [nsC, nsE]) {
    sh("ip", "netns", "add", n);
    made.push(n);
    sh("ip", "-n", n, "link", "set", "lo", "up");
  }
  sh("ip", "-n", nsC, "link", "add", vC, "type", "veth", "peer", "name", vE, "netns", nsE);
  for (const [ns, dev, mine, peers, mine6] of [
    [nsC, vC, [".1", ".3"], [".2", ".4"], "fe80::c:1"],
    [nsE, vE, [".2", ".4"], [".1", ".3"], "fe80::c:2"],
  ] as const) {
    sh("ip", "-n", ns, "link", "set", dev, "addrgenmode", "none");
    for (const m of mine) sh("ip", "-n", ns, "addr", "add", `${NET}${m}/32`, "dev", dev);
    sh("ip", "-n", ns, "-6", "addr", "add", `${mine6}/64`, "dev", dev, "nodad");
    sh("ip", "-n", ns, "link", "set", dev, "up");
    for (const p of peers) sh("ip", "-n", ns, "route", "add", `${NET}${p}/32`, "dev", dev);
  }
}

function conn(opts: { type?: string; src?: string[]; dst?: string[]; ifname?: string } = {}): Connection {
  return {
    id: "conn-1",
    networkService: "ns-1",
    mechanism: {
      cls: "LOCAL",
      type: opts.type ?? "KERNEL",
      parameters: { name: opts.ifname ?? vC },
    },
    context: {
      ipContext: {
        srcIpAddrs: opts.src ?? [`${NET}.1/32`],
        dstIpAddrs: opts.dst ?? [`${NET}.2/32`],
        srcIpRequired: false,
        dstIpRequired: false,
        srcRoutes: [],
        dstRoutes: [],
        excludedPrefixes: [],
        ipNeighbors: [],
        extraPrefixRequest: [],
        extraPrefixes: [],
        policies: [],
      },
      dnsContext: undefined,
      ethernetContext: undefined,
      extraContext: {},
      MTU: 0,
    },
    labels: {},
    path: undefined,
    networkServiceEndpointName: "nse-1",
    payload: "IP",
    state: State.UP,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("livenessDefaults", () => {
  it("reads NSM_LIVENESS_CHECK_INTERVAL / _TIMEOUT as Go durations, defaults 200ms / 1s", () => {
    assert.deepEqual(livenessDefaults({}), { intervalMs: 200, timeoutMs: 1000 });
    assert.deepEqual(
      livenessDefaults({ NSM_LIVENESS_CHECK_INTERVAL: "500ms", NSM_LIVENESS_CHECK_TIMEOUT: "1m30s" }),
      { intervalMs: 500, timeoutMs: 90_000 },
    );
    assert.throws(
      () => livenessDefaults({ NSM_LIVENESS_CHECK_INTERVAL: "soon" }),
      /NSM_LIVENESS_CHECK_INTERVAL/,
    );
    assert.throws(() => livenessDefaults({ NSM_LIVENESS_CHECK_TIMEOUT: "0s" }), /positive/);
  });
});

describe("kernelLivenessCheck without pinging", () => {
  it("non-KERNEL mechanisms and connections without a same-family pair are alive", async () => {
    const none = "/var/run/netns/does-not-exist"; // never opened on these paths
    assert.equal((await kernelLivenessCheck(conn({ type: "VXLAN" }), none)).alive, true);
    assert.equal((await kernelLivenessCheck(conn({ src: [], dst: [] }), none)).alive, true);
    assert.equal((await kernelLivenessCheck(conn({ src: [`${NET}.1/32`], dst: [] }), none)).alive, true);
    const mixed = await kernelLivenessCheck(conn({ src: [`${NET}.1/32`], dst: ["fe80::c:2/64"] }), none);
    assert.equal(mixed.alive, true);
    assert.match(mixed.reason, /no src\/dst address pair/);
  });

  it("a malformed address is dead", async () => {
    const r = await kernelLivenessCheck(conn({ dst: ["169.254.1/32"] }), pathC);
    assert.equal(r.alive, false);
    assert.match(r.reason, /malformed/);
  });

  it("LivenessMonitor.stop() aborts a check in flight; onDead is never called", async () => {
    let started = 0;
    let aborted = 0;
    let dead = 0;
    const mon = new LivenessMonitor(conn(), {
      intervalMs: 10,
      timeoutMs: 1000,
      onDead: () => {
        dead++;
      },
      check: (_c, signal) =>
        new Promise<LivenessReport>((_resolve, reject) => {
          started++;
          signal.addEventListener("abort", () => {
            aborted++;
            reject(signal.reason as Error);
          });
        }),
    });
    mon.start();
    mon.start(); // no-op while running
    await sleep(20);
    mon.stop();
    await sleep(30);
    assert.deepEqual(
      { started, aborted, dead, running: mon.running },
      { started: 1, aborted: 1, dead: 0, running: false },
    );
  });
});

describe(
  `kernelLivenessCheck / LivenessMonitor (real kernel, namespaces ${P}-*)`,
  { skip: !isRoot && "needs root" },
  () => {
    before(buildPair);
    after(() => {
      for (const n of made.splice(0)) {
        try {
          sh("ip", "netns", "del", n);
        } catch {
          // already gone
        }
      }
    });

    it("alive: every src to every dst of the same family, in parallel (4 IPv4 pairs + 1 link-local IPv6 pair)", async () => {
      const c = conn({
        src: [`${NET}.1/32`, `${NET}.3/32`, "fe80::c:1/64"],
        dst: [`${NET}.2/32`, `${NET}.4/32`, "fe80::c:2/64"],
      });
      const t0 = performance.now();
      const r = await kernelLivenessCheck(c, pathC);
      const took = performance.now() - t0;
      assert.equal(r.alive, true, r.reason);
      assert.equal(r.pairs.length, 5);
      assert.ok(r.pairs.some((p) => p.src === `fe80::c:1%${vC}` && p.dst === "fe80::c:2"));
      for (const p of r.pairs) assert.equal(p.received, 1, `${p.src} -> ${p.dst}: stops at the first reply`);
      assert.ok(took < 200, `a healthy check is one round trip per pair, took ${took} ms`);
    });

    it("dead when one pair gets no reply (an address the endpoint does not have), within the timeout", async () => {
      sh("ip", "-n", nsC, "route", "add", `${NET}.9/32`, "dev", vC);
      try {
        const t0 = performance.now();
        const r = await kernelLivenessCheck(conn({ dst: [`${NET}.2/32`, `${NET}.9/32`] }), pathC, {
          timeoutMs: 400,
        });
        const took = performance.now() - t0;
        assert.equal(r.alive, false);
        assert.match(r.reason, new RegExp(`-> ${NET.replaceAll(".", "\\.")}\\.9`));
        assert.deepEqual(
          r.pairs.map((p) => [p.dst, p.received > 0]),
          [
            [`${NET}.2`, true],
            [`${NET}.9`, false],
          ],
        );
        assert.ok(took >= 390 && took < 700, `took ${took} ms`);
      } finally {
        sh("ip", "-n", nsC, "route", "del", `${NET}.9/32`, "dev", vC);
      }
    });

    it("dead when the endpoint side of the link is down (1 s default timeout)", async () => {
      sh("ip", "-n", nsE, "link", "set", vE, "down");
      try {
        const t0 = performance.now();
        const r = await kernelLivenessCheck(conn(), pathC);
        const took = performance.now() - t0;
        assert.equal(r.alive, false, r.reason);
        assert.equal(r.pairs[0]?.sent, 4);
        assert.ok(took >= 990 && took < 1300, `took ${took} ms`);
      } finally {
        sh("ip", "-n", nsE, "link", "set", vE, "up");
        // IPv4 drops a link's routes when it goes down: put the endpoint's back.
        for (const p of [".1", ".3"]) sh("ip", "-n", nsE, "route", "replace", `${NET}${p}/32`, "dev", vE);
      }
      assert.equal((await kernelLivenessCheck(conn(), pathC)).alive, true, "alive again once the link is up");
    });

    it("dead when the client's namespace is gone", async () => {
      const r = await kernelLivenessCheck(conn(), `/var/run/netns/${P}-gone`);
      assert.equal(r.alive, false);
      assert.match(r.reason, /ENOENT/);
    });

    it("LivenessMonitor: checks every interval while alive, calls onDead once after the veth is deleted", async () => {
      const deaths: { conn: Connection; report: LivenessReport; at: number }[] = [];
      let checks = 0;
      const mon = new LivenessMonitor(conn(), {
        netns: pathC,
        intervalMs: 50,
        timeoutMs: 500,
        onDead: (c, report) => {
          deaths.push({ conn: c, report, at: performance.now() });
        },
        onCheck: () => checks++,
        onError: (err) => assert.fail(`unexpected error ${String(err)}`),
      });
      try {
        mon.start();
        await sleep(300);
        assert.ok(checks >= 4, `only ${checks} checks in 300 ms at a 50 ms interval`);
        assert.equal(deaths.length, 0);
        const deletedAt = performance.now();
        sh("ip", "-n", nsC, "link", "del", vC); // deletes both ends
        await sleep(800); // ≤ interval + timeout + slack
        assert.equal(deaths.length, 1, "onDead called once");
        const d = deaths[0]!;
        assert.equal(d.conn.id, "conn-1");
        assert.equal(d.report.alive, false);
        assert.ok(d.at - deletedAt < 650, `noticed after ${d.at - deletedAt} ms`);
        assert.equal(mon.running, false, "stops after reporting death");
        const checksAtDeath = checks;
        await sleep(200);
        assert.equal(deaths.length, 1, "not called again");
        assert.equal(checks, checksAtDeath, "no checks after death until restarted");
        // Restarted on a dead data plane: reports once more.
        mon.start();
        await sleep(100);
        assert.equal(deaths.length, 2);
      } finally {
        mon.stop();
      }
    });

    it("leaves nothing behind", () => {
      for (const n of made.splice(0)) sh("ip", "netns", "del", n);
      const left = sh("ip", "netns", "list")
        .split("\n")
        .filter((l) => l.startsWith(P));
      assert.deepEqual(left, []);
    });
  },
);
