// `npm run bench:dataplane`: what the kernel forwarder's data plane (issue 4) costs and carries.
// Two nodes are network namespaces joined by an underlay veth (198.18.0.1/24 ↔ 198.18.0.2/24); pods are
// namespaces; real `nsm` processes run inside them (registry and nsmgr-N in node N, `forwarder kernel` in
// node N on the underlay, `nse icmp-responder` in its NSE pod). A second, identical mesh with `forwarder noop`
// (no data plane) on other ports of the same node namespaces is the baseline. NsmClients in this process
// request connections for 10 client pod namespaces (one interface name per connection) through nsmgr-1:
//   - connection setup latency (Request → response) p50/p99 and setups/s, 10 and 100 in flight, local (NSE
//     pod on node 1: veth) and remote (NSE pod on node 2: VXLAN), kernel and noop rounds interleaved; then
//     Close latency, and the time until the forwarders' deletes (run after Close is answered) have emptied
//     the client and NSE pods ("drain"), before the next round;
//   - single-stream TCP throughput (iperf3 -J, median of several runs) through an NSM-made local (veth) and
//     remote (VXLAN) connection, each divided by the same iperf3 through a hand-built path between fresh pod
//     namespaces: a plain veth pair, and a VXLAN made with `ip` in the node namespaces of an identical
//     underlay and moved into the pods, with the MTU read from the NSM interface; NSM and hand-built runs
//     alternate (counterbalanced A B B A) so machine noise hits both alike.
// Components start through bin/nsm.js (dist/ when fresh; `node scripts/build.mjs` is run first when dist/ is
// stale) and the run reports which (components_from_dist). CPU time of every process is read from /proc per
// round; a round during which processes outside the benchmark used more than 10 % as much CPU as ours (a
// throughput run: more than 5 % of the machine) is repeated, at most 3 times per point.
// Every namespace and link carries a per-run prefix; exactly those namespaces are deleted at the end, on
// failure and on SIGINT/SIGTERM. Addresses: underlay 198.18.0.0/24, NSM 100.64.0.0/16 and 100.65.0.0/16,
// hand-built paths 100.66.0.0/30 and 100.67.0.0/30. Nothing is added to the root namespace.
// Beside the local 10-in-flight rounds, the same rtnetlink requests the kernel forwarder sends for a local
// setup are timed one by one in this process (bench/lib/netlink-ops.ts), in fresh namespaces shaped like the
// pods, so the forwarder's extra cost per setup over the noop forwarder can be set against the kernel's own
// cost for the same work in the same run (local_kernel_extra_over_ops).
// Prints a table and writes bench/results/dataplane.json. `--quick`: scaled-down pass, no JSON. `--cpu-prof
// <dir>`: every component runs under `node --cpu-prof` (profiles written to <dir> as each stops). For
// iterating, `--points local:10[,remote:100…]`, `--rounds N` and `--no-throughput` run part of it (no JSON).
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { Connection } from "../src/api/connection.js";
import { Dataplane } from "../src/dataplane/index.js";
import { NsmClient } from "../src/components/client.js";
import { createSecurity } from "../src/components/security.js";
import { GrpcClient } from "../src/core/client.js";
import { launcherUsesDist, median, percentile, Proc } from "./lib/control-plane-mesh.js";
import { checkErrors, fmt, printTable, writeResults, type RoundResult } from "./lib/report.js";
import { localSetupOps, quantile, timeLocalSetup, type LocalSetupOpKey } from "./lib/netlink-ops.js";
import { Netns, ip, links } from "../test/helpers/netns.js";

const quick = process.argv.includes("--quick");
const profIdx = process.argv.indexOf("--cpu-prof");
const cpuProfDir = profIdx > 0 ? process.argv[profIdx + 1] : undefined;
const nodeArgs = cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${resolve(cpuProfDir)}`] : [];
const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag);
  return i > 0 ? process.argv[i + 1] : undefined;
};
/** `--points local:10,remote:100`: only these setup points (a partial run writes no JSON). */
const onlyPoints = argValue("--points")?.split(",");
const roundsArg = argValue("--rounds");
const noThroughput = process.argv.includes("--no-throughput");
const partial = onlyPoints !== undefined || roundsArg !== undefined || noThroughput;

const cfg = {
  pods: 10,
  concurrency: [10, 100] as const,
  rounds: roundsArg !== undefined ? Number(roundsArg) : quick ? 1 : 3,
  /** Interface names per client pod in a round: a round is pods × this many setups, all held until closed. */
  namesPerPod: (c: number): number => (quick ? (c >= 100 ? 10 : 3) : c >= 100 ? 20 : 10),
  iperfSeconds: quick ? 1 : 5,
  iperfReps: quick ? 2 : 6,
  readyTimeoutMs: 60_000,
  drainTimeoutMs: 60_000,
  /** A setup round in which processes outside the benchmark used more than this share of our CPU is redone. */
  disturbedShare: 0.1,
  /** A throughput run in which they used more than this share of the machine (all CPUs × wall) is redone. */
  disturbedMachineShare: 0.05,
  maxRepeats: 3,
  /** Interval of the forwarders' system-call sampling during setup rounds. */
  syscallSampleMs: 5,
  targets: { localP50Ms: 10, remoteP50Ms: 20, throughputRatio: 0.95, extraOverOps: 2 },
};

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(benchDir, "..");
const resultsFile = join(benchDir, "results", "dataplane.json");
const nsmBin = join(repoRoot, "bin", "nsm.js");

// ---- namespaces and links of this run ----

const net = new Netns("nsmdp");
const tmp = mkdtempSync(join(tmpdir(), "nsm-bench-dp-"));
const procs: Proc[] = [];
const helpers = new Set<ChildProcess>();
let cleaned = false;

/** Synchronous teardown for exit and signal handlers: kill by pid, delete our namespaces, remove tmp. */
function teardownNow(): void {
  if (cleaned) return;
  cleaned = true;
  for (const p of procs) p.killNow();
  for (const h of helpers) if (h.pid !== undefined && h.exitCode === null) h.kill("SIGKILL");
  net.cleanup();
  rmSync(tmp, { recursive: true, force: true });
}
process.on("exit", teardownNow);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(`bench: ${sig}, stopping processes and deleting the namespaces of ${net.prefix}`);
    teardownNow();
    process.exit(130);
  });
}

// ---- CPU accounting from /proc ----

const tickMs = 1000 / 100; // USER_HZ

interface StatTimes {
  user: number;
  sys: number;
  childUser: number;
  childSys: number;
  kthread: boolean;
}

function readStat(pid: number | "self"): StatTimes | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    user: Number(f[11]) * tickMs,
    sys: Number(f[12]) * tickMs,
    childUser: Number(f[13]) * tickMs,
    childSys: Number(f[14]) * tickMs,
    kthread: (Number(f[6]) & 0x00200000) !== 0, // PF_KTHREAD
  };
}

interface Tracked {
  name: string;
  pid: number;
}

interface Snapshot {
  at: number;
  tracked: Map<string, { user: number; sys: number }>;
  self: StatTimes;
  /** Other user-space processes: own CPU plus that of the children they reaped (user+sys, ms). */
  others: Map<number, number>;
}

function snapshot(tracked: Tracked[]): Snapshot {
  const mine = new Set<number>([process.pid]);
  const t = new Map<string, { user: number; sys: number }>();
  for (const p of tracked) {
    mine.add(p.pid);
    const s = readStat(p.pid);
    if (s) t.set(p.name, { user: s.user, sys: s.sys });
  }
  const others = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (mine.has(pid)) continue;
    const s = readStat(pid);
    if (s && !s.kthread) others.set(pid, s.user + s.sys + s.childUser + s.childSys);
  }
  return { at: performance.now(), tracked: t, self: readStat("self")!, others };
}

interface CpuDelta {
  wallMs: number;
  /** user+sys per tracked process, plus "bench" (this process and the helpers it waited for). */
  byName: Map<string, number>;
  /** sys part per tracked process. */
  sysByName: Map<string, number>;
  ours: number;
  /** CPU of user-space processes outside this benchmark. */
  others: number;
}

const benchKey = "bench";

function cpuDelta(a: Snapshot, b: Snapshot): CpuDelta {
  const byName = new Map<string, number>();
  const sysByName = new Map<string, number>();
  let ours = 0;
  for (const [name, v] of b.tracked) {
    const p = a.tracked.get(name) ?? { user: v.user, sys: v.sys };
    byName.set(name, v.user - p.user + (v.sys - p.sys));
    sysByName.set(name, v.sys - p.sys);
    ours += v.user - p.user + (v.sys - p.sys);
  }
  const selfUser = b.self.user - a.self.user + (b.self.childUser - a.self.childUser);
  const selfSys = b.self.sys - a.self.sys + (b.self.childSys - a.self.childSys);
  byName.set(benchKey, selfUser + selfSys);
  sysByName.set(benchKey, selfSys);
  ours += selfUser + selfSys;
  // The change of the others' total: processes alive at both ends count their growth, new ones all they
  // used; one that ended hands its total to the parent that reaped it, so its earlier total is taken off.
  let others = 0;
  for (const [pid, v] of b.others) others += v - (a.others.get(pid) ?? 0);
  for (const [pid, v] of a.others) if (!b.others.has(pid)) others -= v;
  return { wallMs: b.at - a.at, byName, sysByName, ours, others: Math.max(0, others) };
}

/**
 * Samples, every few ms, which system call the main thread of each process is in (/proc/<pid>/syscall):
 * the share of samples in sendmsg(2) is the share of wall time its event loop was blocked handing
 * rtnetlink requests to the kernel (the kernel executes them inside that call, waits included).
 */
class SyscallSampler {
  private readonly counts = new Map<string, { samples: number; inSendmsg: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly procs: Tracked[]) {}

  start(): void {
    this.counts.clear();
    for (const p of this.procs) this.counts.set(p.name, { samples: 0, inSendmsg: 0 });
    this.timer = setInterval(() => {
      for (const p of this.procs) {
        let nr: string;
        try {
          nr = readFileSync(`/proc/${p.pid}/syscall`, "utf8").split(" ", 1)[0]!;
        } catch {
          continue;
        }
        const c = this.counts.get(p.name)!;
        c.samples++;
        if (nr === sendmsgNr) c.inSendmsg++;
      }
    }, cfg.syscallSampleMs);
  }

  /** Share of samples (0..1) each process spent in sendmsg since start(). */
  stop(): Map<string, number> {
    clearInterval(this.timer);
    return new Map([...this.counts].map(([k, v]) => [k, v.samples > 0 ? v.inSendmsg / v.samples : 0]));
  }
}

/** sendmsg's number on this architecture (the netlink package sends every request with it). */
const sendmsgNr = process.arch === "arm64" ? "211" : "46";

let repeatedSetupRounds = 0;
let repeatedThroughputPairs = 0;

// ---- components ----

function spawnIn(ns: string, name: string, args: string[], env: Record<string, string> = {}): Proc {
  const fromDist = launcherUsesDist();
  // `ip netns exec` execs: the pid is the component's own.
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeArgs, nsmBin, ...args], {
    env: { ...process.env, ...env, NSM_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p = new Proc(name, child, fromDist);
  procs.push(p);
  return p;
}

async function pollUntil<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  proc?: Proc,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (proc && !proc.running) throw new Error(`${proc.name} exited before ${what}:\n${proc.output()}`);
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end)
      throw new Error(`no ${what} after ${timeoutMs} ms${proc ? `:\n${proc.output()}` : ""}`);
    await sleep(50);
  }
}

async function listening(p: Proc, port: number): Promise<void> {
  await pollUntil(
    `${p.name} listening on tcp ${port}`,
    () => (p.listeningTcpPorts().includes(port) ? true : undefined),
    cfg.readyTimeoutMs,
    p,
  );
}

async function dialable(p: Proc, url: string): Promise<void> {
  await pollUntil(
    `${p.name}'s socket`,
    async () => {
      const c = new GrpcClient(url);
      try {
        await c.waitReady(500);
        return true;
      } catch {
        return undefined;
      } finally {
        c.close();
      }
    },
    cfg.readyTimeoutMs,
    p,
  );
}

type MeshKind = "kernel" | "noop";
type PathKind = "local" | "remote";

interface Mesh {
  kind: MeshKind;
  nsmgrUrl: string;
  service: Record<PathKind, string>;
  procs: Proc[];
  /** Namespaces where this mesh's NSEs get their interfaces, by path. */
  nsePod: Record<PathKind, string>;
}

interface Topology {
  node1: string;
  node2: string;
  e1: string;
  e2: string;
  pods: string[];
}

/** registry + nsmgr in node 1, nsmgr in node 2, a forwarder of `kind` in each node, an NSE per node. */
async function startMesh(kind: MeshKind, topo: Topology, portBase: number): Promise<Mesh> {
  const tag = kind === "kernel" ? "k" : "n";
  const sock = (n: string): string => `unix://${join(tmp, `${tag}-${n}.sock`)}`;
  const regUrl = `tcp://198.18.0.1:${portBase + 2}`;
  const registry = spawnIn(topo.node1, `${kind}/registry`, [
    "registry",
    "--store",
    "memory",
    "--listen-on",
    regUrl,
  ]);
  await listening(registry, portBase + 2);
  const nodes = [
    { n: 1, ns: topo.node1, addr: "198.18.0.1", nse: topo.e1, cidr: "100.64.0.0/16", path: "local" },
    { n: 2, ns: topo.node2, addr: "198.18.0.2", nse: topo.e2, cidr: "100.65.0.0/16", path: "remote" },
  ] as const;
  const service: Record<PathKind, string> = { local: `${net.prefix}l`, remote: `${net.prefix}r` };
  const started: Proc[] = [registry];
  await Promise.all(
    nodes.map(async (nd) => {
      const nsmgr = spawnIn(
        nd.ns,
        `${kind}/nsmgr-${nd.n}`,
        [
          "nsmgr",
          "--name",
          `${net.prefix}-${tag}nsmgr-${nd.n}`,
          "--listen-on",
          `${sock(`nsmgr-${nd.n}`)},tcp://${nd.addr}:${portBase + 1}`,
          "--registry-url",
          regUrl,
        ],
        { NODE_NAME: `${net.prefix}-node-${nd.n}` },
      );
      started.push(nsmgr);
      await listening(nsmgr, portBase + 1);
      await dialable(nsmgr, sock(`nsmgr-${nd.n}`));
      const fwd = spawnIn(nd.ns, `${kind}/fwd-${nd.n}`, [
        "forwarder",
        kind,
        // The kernel forwarder tags its links with its name and collects untagged-by-itself orphans: a name of
        // this run only, so it never touches another forwarder's links.
        "--name",
        `${net.prefix}-${tag}fwd-${nd.n}`,
        "--listen-on",
        sock(`fwd-${nd.n}`),
        "--connect-to",
        sock(`nsmgr-${nd.n}`),
        "--tunnel-ip",
        nd.addr,
      ]);
      const nse = spawnIn(nd.nse, `${kind}/nse-${nd.path}`, [
        "nse",
        "icmp-responder",
        "--name",
        `${net.prefix}-${tag}nse-${nd.n}`,
        "--listen-on",
        sock(`nse-${nd.n}`),
        "--connect-to",
        sock(`nsmgr-${nd.n}`),
        "--services",
        service[nd.path],
        "--cidr",
        nd.cidr,
        "--netns",
        net.path(nd.nse),
      ]);
      started.push(fwd, nse);
      await Promise.all([dialable(fwd, sock(`fwd-${nd.n}`)), dialable(nse, sock(`nse-${nd.n}`))]);
    }),
  );
  const order = ["registry", "nsmgr-1", "nsmgr-2", "fwd-1", "fwd-2", "nse-local", "nse-remote"];
  started.sort((a, b) => order.indexOf(a.name.split("/")[1]!) - order.indexOf(b.name.split("/")[1]!));
  return {
    kind,
    nsmgrUrl: sock("nsmgr-1"),
    service,
    procs: started,
    nsePod: { local: topo.e1, remote: topo.e2 },
  };
}

function newClient(name: string, mesh: Mesh, pod: string): NsmClient {
  return new NsmClient({
    name,
    nsmgrUrl: mesh.nsmgrUrl,
    netnsPath: net.path(pod),
    security: createSecurity({ name, insecure: true }),
  });
}

/** Waits until `namespaces` hold no link but lo (the forwarders delete after answering Close). */
async function drained(namespaces: string[]): Promise<number> {
  const t0 = performance.now();
  await pollUntil(
    `empty namespaces (${namespaces.join(", ")})`,
    () => (namespaces.every((ns) => links(ns).length === 0) ? true : undefined),
    cfg.drainTimeoutMs,
  );
  return performance.now() - t0;
}

/** Retries a local and a remote Request until both succeed (everything registered), then closes them. */
async function untilServing(mesh: Mesh, pod: string): Promise<void> {
  const end = Date.now() + cfg.readyTimeoutMs;
  const probe = newClient(`${net.prefix}-${mesh.kind}-probe`, mesh, pod);
  try {
    for (const path of ["local", "remote"] as const) {
      for (;;) {
        try {
          const conn = await probe.request({ service: mesh.service[path], ifname: `${net.prefix}p` });
          await probe.close(conn.id);
          await drained([pod, mesh.nsePod[path]]);
          break;
        } catch (err) {
          if (Date.now() > end)
            throw new Error(
              `${mesh.kind} ${path}: not served after ${cfg.readyTimeoutMs} ms: ${errText(err)}`,
            );
          await sleep(200);
        }
      }
    }
  } finally {
    await probe.closeAll();
  }
}

// ---- setup latency ----

/** `c` workers, each keeping one operation in flight until `op` returns false (no work left). */
async function closedLoop(c: number, op: (worker: number) => Promise<boolean>): Promise<RoundResult> {
  const latenciesMs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async (_, w) => {
      for (;;) {
        const s = performance.now();
        try {
          if (!(await op(w))) return;
          latenciesMs.push(performance.now() - s);
        } catch (err) {
          errors++;
          firstError ??= errText(err);
        }
      }
    }),
  );
  return { latenciesMs, wallMs: performance.now() - t0, errors, firstError };
}

/**
 * c NsmClients, worker w in pod w mod pods. A round: every worker takes the next free interface name of its
 * pod and requests a connection with it, until its pod's names are used up (pods × namesPerPod setups).
 */
class ClientSet {
  private readonly clients: { client: NsmClient; pod: number }[];
  private readonly open: { client: NsmClient; id: string }[] = [];

  constructor(
    private readonly mesh: Mesh,
    private readonly path: PathKind,
    private readonly c: number,
    private readonly pods: string[],
    private readonly namesPerPod: number,
  ) {
    this.clients = Array.from({ length: c }, (_, w) => {
      const pod = w % pods.length;
      return { client: newClient(`${net.prefix}-${mesh.kind}-${path}-c${c}-w${w}`, mesh, pods[pod]!), pod };
    });
  }

  get total(): number {
    return this.pods.length * this.namesPerPod;
  }

  get held(): number {
    return this.open.length;
  }

  setups(): Promise<RoundResult> {
    const free = this.pods.map(() =>
      Array.from({ length: this.namesPerPod }, (_, i) => `${net.prefix}i${i}`),
    );
    return closedLoop(this.c, async (w) => {
      const { client, pod } = this.clients[w]!;
      const ifname = free[pod]!.shift();
      if (ifname === undefined) return false;
      const conn = await client.request({ service: this.mesh.service[this.path], ifname });
      this.open.push({ client, id: conn.id });
      return true;
    });
  }

  closeAll(): Promise<RoundResult> {
    const held = this.open.splice(0);
    let next = 0;
    return closedLoop(this.c, async () => {
      const h = held[next++];
      if (!h) return false;
      await h.client.close(h.id);
      return true;
    });
  }

  async dispose(): Promise<void> {
    await this.closeAll();
    await Promise.all(this.clients.map((c) => c.client.closeAll()));
  }
}

interface MeshPoint {
  mesh: MeshKind;
  /** Share of the setup rounds' wall time the forwarder's event loop was blocked in sendmsg (netlink). */
  sendmsgShare: Map<string, number>;
  /** The same over the Close phases (Close calls, then the wait for the deletes). */
  sendmsgShareClose: Map<string, number>;
  samples: number;
  p50: number;
  p99: number;
  perS: number;
  perSMin: number;
  perSMax: number;
  closeP50: number;
  closeP99: number;
  closesPerS: number;
  drainMs: number;
  drainMsMax: number;
  cpuMsPerSetup: Map<string, number>;
  sysMsPerSetup: Map<string, number>;
  othersMsPerSetup: number;
  /** Calls of this point (warm-up, setups, closes, repeated rounds included) and how many failed. */
  checkedCalls: number;
  failedCalls: number;
}

interface Point {
  path: PathKind;
  c: number;
  kernel: MeshPoint;
  noop: MeshPoint;
  /** Local, 10 in flight: the forwarder's rtnetlink requests for a setup, timed alone (ms per sample). */
  ops?: Map<LocalSetupOpKey, number[]>;
}

interface Acc {
  lat: number[];
  closeLat: number[];
  rates: number[];
  closeRates: number[];
  drains: number[];
  cpu: Map<string, number>;
  sys: Map<string, number>;
  others: number;
  setups: number;
  sendmsg: Map<string, number[]>;
  sendmsgClose: Map<string, number[]>;
  checked: number;
  failed: number;
}

const newAcc = (): Acc => ({
  lat: [],
  closeLat: [],
  rates: [],
  closeRates: [],
  drains: [],
  cpu: new Map(),
  sys: new Map(),
  others: 0,
  setups: 0,
  sendmsg: new Map(),
  sendmsgClose: new Map(),
  checked: 0,
  failed: 0,
});

/**
 * The kernel forwarder's rtnetlink requests for local setups (bench/lib/netlink-ops.ts), timed in this
 * process. A round is shaped like a setup round: fresh client namespaces (`pods`, connection i in pod
 * i mod pods, as the clients take them) and one NSE namespace that holds every connection of the round, as
 * the NSE pod does. The namespaces keep their links until the end of the run: deleting them between rounds
 * would put the kernel's deferred clean-up (RTNL held) into the next measured round.
 */
class LocalOps {
  private readonly dp = new Dataplane();
  private rounds = 0;
  readonly samples = new Map<LocalSetupOpKey, number[]>(localSetupOps.map((o) => [o.key, []]));

  async round(pods: number, namesPerPod: number, keep: boolean): Promise<void> {
    const r = this.rounds++;
    const nse = this.dp.netns(net.path(net.add(`o${r}e`)));
    const clients = Array.from({ length: pods }, (_, i) => this.dp.netns(net.path(net.add(`o${r}c${i}`))));
    try {
      for (let i = 0; i < pods * namesPerPod; i++) {
        const t = await timeLocalSetup(clients[i % pods]!, nse, {
          clientIf: `${net.prefix}i${Math.floor(i / pods)}`,
          nseIf: `${net.prefix}o${i}`,
          // As long as the forwarder's: nsm:<forwarder name>:<connection id>.
          alias: `nsm:${net.prefix}-kfwd-1:${randomUUID()}`,
          clientIp: `100.68.${i >> 8}.${i & 255}`,
          nseIp: `100.69.${i >> 8}.${i & 255}`,
        });
        if (keep) for (const o of localSetupOps) this.samples.get(o.key)!.push(t[o.key]);
      }
    } finally {
      for (const h of [nse, ...clients]) h.close();
    }
  }

  close(): void {
    this.dp.close();
  }
}

function trackedOf(meshes: Mesh[]): Tracked[] {
  return meshes.flatMap((m) => m.procs.map((p) => ({ name: p.name, pid: p.pid })));
}

async function setupPoint(path: PathKind, c: number, meshes: Mesh[], pods: string[]): Promise<Point> {
  const namesPerPod = cfg.namesPerPod(c);
  const sets = new Map(meshes.map((m) => [m.kind, new ClientSet(m, path, c, pods, namesPerPod)]));
  const accs = new Map(meshes.map((m) => [m.kind, newAcc()]));
  const tracked = trackedOf(meshes);
  // The run's tally (report.ts) and this point's own.
  const check = (kind: MeshKind, what: string, r: RoundResult, total: number): void => {
    checkErrors(what, r, total);
    const a = accs.get(kind)!;
    a.checked += total;
    a.failed += r.errors;
  };
  // Local at 10 in flight: the forwarder's requests timed alone, one round after each pair of mesh rounds.
  const ops = path === "local" && c === 10 ? new LocalOps() : undefined;
  try {
    // One round per mesh: every pod namespace, interface name and client channel has been used once.
    for (const m of meshes) {
      const set = sets.get(m.kind)!;
      check(m.kind, `${m.kind} ${path} c=${c} warm-up`, await set.setups(), set.total);
      check(m.kind, `${m.kind} ${path} c=${c} warm-up close`, await set.closeAll(), set.total);
      await drained([...pods, m.nsePod[path]]);
    }
    await ops?.round(pods.length, namesPerPod, false);
    for (let r = 0; r < cfg.rounds; r++) {
      for (const m of meshes) {
        for (let repeats = 0; ; repeats++) {
          const set = sets.get(m.kind)!;
          const what = `${m.kind} ${path} c=${c} round ${r + 1}`;
          const fwds = m.procs
            .filter((p) => /\/fwd-/.test(p.name))
            .map((p) => ({ name: p.name.split("/")[1]!, pid: p.pid }));
          const sampler = new SyscallSampler(fwds);
          const s0 = snapshot(tracked);
          sampler.start();
          const round = await set.setups();
          const blocked = sampler.stop();
          const s1 = snapshot(tracked);
          check(m.kind, what, round, set.total);
          if (m.kind === "kernel") {
            // The interfaces exist when Request returns: count them (outside the timed part).
            const made = pods.reduce((n, ns) => n + links(ns).length, 0);
            if (made !== set.held)
              throw new Error(`${what}: ${set.held} connections but ${made} interfaces in the client pods`);
          }
          const s2 = snapshot(tracked);
          sampler.start();
          const closed = await set.closeAll();
          const s3 = snapshot(tracked);
          check(m.kind, `${what} close`, closed, round.latenciesMs.length);
          const drainMs = await drained([...pods, m.nsePod[path]]);
          const blockedClose = sampler.stop();
          const d = cpuDelta(s0, s1);
          const dc = cpuDelta(s2, s3);
          const bad = d.others > cfg.disturbedShare * d.ours || dc.others > cfg.disturbedShare * dc.ours;
          if (bad && repeats < cfg.maxRepeats) {
            repeatedSetupRounds++;
            console.error(
              `  ${what}: other processes used ${fmt(d.others + dc.others)} ms CPU against our ` +
                `${fmt(d.ours + dc.ours)} ms; round repeated`,
            );
            continue;
          }
          const acc = accs.get(m.kind)!;
          acc.lat.push(...round.latenciesMs);
          acc.closeLat.push(...closed.latenciesMs);
          acc.rates.push((round.latenciesMs.length * 1000) / round.wallMs);
          acc.closeRates.push((closed.latenciesMs.length * 1000) / closed.wallMs);
          acc.drains.push(drainMs);
          const mine = new Set([...m.procs.map((p) => p.name), benchKey]);
          for (const [k, v] of d.byName) if (mine.has(k)) acc.cpu.set(k, (acc.cpu.get(k) ?? 0) + v);
          for (const [k, v] of d.sysByName) if (mine.has(k)) acc.sys.set(k, (acc.sys.get(k) ?? 0) + v);
          acc.others += d.others;
          for (const [k, v] of blocked) acc.sendmsg.set(k, [...(acc.sendmsg.get(k) ?? []), v]);
          for (const [k, v] of blockedClose) acc.sendmsgClose.set(k, [...(acc.sendmsgClose.get(k) ?? []), v]);
          acc.setups += round.latenciesMs.length;
          break;
        }
      }
      await ops?.round(pods.length, namesPerPod, true);
    }
    const result = (kind: MeshKind): MeshPoint => {
      const a = accs.get(kind)!;
      a.lat.sort((x, y) => x - y);
      a.closeLat.sort((x, y) => x - y);
      const per = (m: Map<string, number>): Map<string, number> =>
        new Map([...m].map(([k, v]) => [k.split("/").pop()!, v / a.setups]));
      return {
        mesh: kind,
        sendmsgShare: new Map([...a.sendmsg].map(([k, v]) => [k, median(v)])),
        sendmsgShareClose: new Map([...a.sendmsgClose].map(([k, v]) => [k, median(v)])),
        samples: a.lat.length,
        p50: percentile(a.lat, 0.5),
        p99: percentile(a.lat, 0.99),
        perS: median(a.rates),
        perSMin: Math.min(...a.rates),
        perSMax: Math.max(...a.rates),
        closeP50: percentile(a.closeLat, 0.5),
        closeP99: percentile(a.closeLat, 0.99),
        closesPerS: median(a.closeRates),
        drainMs: median(a.drains),
        drainMsMax: Math.max(...a.drains),
        cpuMsPerSetup: per(a.cpu),
        sysMsPerSetup: per(a.sys),
        othersMsPerSetup: a.others / a.setups,
        checkedCalls: a.checked,
        failedCalls: a.failed,
      };
    };
    const pt: Point = { path, c, kernel: result("kernel"), noop: result("noop") };
    if (ops) pt.ops = ops.samples;
    for (const mp of [pt.kernel, pt.noop])
      console.error(
        `  ${mp.mesh} ${path} c=${c}: p50 ${fmt(mp.p50)} ms, p99 ${fmt(mp.p99)} ms, ${fmt(mp.perS)} setups/s, ` +
          `close p50 ${fmt(mp.closeP50)} ms, drain ${fmt(mp.drainMs)} ms`,
      );
    return pt;
  } finally {
    ops?.close();
    for (const s of sets.values()) await s.dispose();
  }
}

// ---- throughput ----

interface PathEnds {
  label: string;
  clientNs: string;
  serverNs: string;
  serverIp: string;
  clientIf: string;
  serverIf: string;
}

function addrHost(cidr: string): string {
  return cidr.split("/")[0]!;
}

interface LinkDetails {
  mtu: number;
  kind: string;
  /** `ip -d` details that shape the data path (offload sizes, VXLAN flags), without names, ids, addresses. */
  shape: string;
}

function linkDetails(ns: string, ifname: string): LinkDetails {
  const [j] = JSON.parse(ip(["-j", "-d", "-n", ns, "link", "show", "dev", ifname])) as {
    mtu: number;
    gso_max_size?: number;
    gso_max_segs?: number;
    gro_max_size?: number;
    num_tx_queues?: number;
    num_rx_queues?: number;
    txqlen?: number;
    qdisc?: string;
    linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  }[];
  if (!j) throw new Error(`no link ${ifname} in ${ns}`);
  const data = { ...(j.linkinfo?.info_data ?? {}) };
  for (const k of ["id", "remote", "local", "link"]) delete data[k];
  const shape = JSON.stringify({
    kind: j.linkinfo?.info_kind,
    qdisc: j.qdisc,
    txqlen: j.txqlen,
    gso: [j.gso_max_size, j.gso_max_segs],
    gro: j.gro_max_size,
    queues: [j.num_tx_queues, j.num_rx_queues],
    data,
  });
  return { mtu: j.mtu, kind: j.linkinfo?.info_kind ?? "?", shape };
}

function ping(ns: string, dst: string): boolean {
  try {
    execFileSync("ip", ["netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** `iperf3 -s` bound to the server address, inside the server namespace; resolves once it listens. */
async function iperfServer(p: PathEnds): Promise<Tracked & { child: ChildProcess }> {
  const child = spawn("ip", ["netns", "exec", p.serverNs, "iperf3", "-s", "-B", p.serverIp, "-p", "5201"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  helpers.add(child);
  let err = "";
  child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  await pollUntil(
    `iperf3 server in ${p.serverNs}`,
    () => {
      if (child.exitCode !== null) throw new Error(`iperf3 -s in ${p.serverNs} exited: ${err}`);
      const out = execFileSync("ip", ["netns", "exec", p.serverNs, "ss", "-Hltn"], { encoding: "utf8" });
      return out.includes(`${p.serverIp}:5201`) ? true : undefined;
    },
    10_000,
  );
  return { name: `iperf3-s ${p.label}`, pid: child.pid!, child };
}

interface IperfRun {
  gbps: number;
  retransmits: number;
  senderCpuPct: number;
  receiverCpuPct: number;
}

function iperfClient(p: PathEnds): Promise<IperfRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        p.clientNs,
        "iperf3",
        "-c",
        p.serverIp,
        "-p",
        "5201",
        "-t",
        String(cfg.iperfSeconds),
        "-J",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    helpers.add(child);
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), (cfg.iperfSeconds + 20) * 1000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      helpers.delete(child);
      try {
        const j = JSON.parse(out) as {
          error?: string;
          end?: {
            sum_received?: { bits_per_second?: number };
            sum_sent?: { retransmits?: number };
            cpu_utilization_percent?: { host_total?: number; remote_total?: number };
          };
        };
        const bps = j.end?.sum_received?.bits_per_second;
        if (code !== 0 || j.error || bps === undefined)
          throw new Error(`iperf3 -c ${p.label}: exit ${code}: ${j.error ?? err}`);
        resolve({
          gbps: bps / 1e9,
          retransmits: j.end?.sum_sent?.retransmits ?? 0,
          senderCpuPct: j.end?.cpu_utilization_percent?.host_total ?? NaN,
          receiverCpuPct: j.end?.cpu_utilization_percent?.remote_total ?? NaN,
        });
      } catch (e) {
        reject(
          e instanceof SyntaxError || !(e instanceof Error)
            ? new Error(`iperf3 -c ${p.label}: exit ${code}: ${err || out}`)
            : e,
        );
      }
    });
  });
}

/** A plain veth pair between two fresh pods, addressed like the NSM connection (/32 + host route). */
function handVeth(a: string, b: string, mtu: number): PathEnds {
  const an = `${net.prefix}va`;
  const bn = `${net.prefix}vb`;
  ip(["-n", a, "link", "add", an, "mtu", String(mtu), "type", "veth", "peer", "name", bn, "netns", b]);
  ip(["-n", b, "link", "set", bn, "mtu", String(mtu)]);
  addressPair(a, an, "100.66.0.1", b, bn, "100.66.0.2");
  return {
    label: "hand-built veth",
    clientNs: a,
    serverNs: b,
    serverIp: "100.66.0.2",
    clientIf: an,
    serverIf: bn,
  };
}

/**
 * A VXLAN per side made in the node namespace on the underlay and moved into the pod, as the forwarder does
 * (same VNI on both sides, UDP 4789, no learning), by hand with `ip`.
 */
function handVxlan(n1: string, p1: string, n2: string, p2: string, mtu: number): PathEnds {
  const vni = "4242";
  const sides = [
    { node: n1, pod: p1, name: `${net.prefix}xa`, local: "198.18.0.1", remote: "198.18.0.2" },
    { node: n2, pod: p2, name: `${net.prefix}xb`, local: "198.18.0.2", remote: "198.18.0.1" },
  ];
  for (const s of sides) {
    ip([
      "-n",
      s.node,
      "link",
      "add",
      s.name,
      "mtu",
      String(mtu),
      "type",
      "vxlan",
      "id",
      vni,
      "local",
      s.local,
      "remote",
      s.remote,
      "dstport",
      "4789",
      "nolearning",
    ]);
    ip(["-n", s.node, "link", "set", s.name, "netns", s.pod]);
  }
  addressPair(p1, sides[0]!.name, "100.67.0.1", p2, sides[1]!.name, "100.67.0.2");
  return {
    label: "hand-built VXLAN",
    clientNs: p1,
    serverNs: p2,
    serverIp: "100.67.0.2",
    clientIf: sides[0]!.name,
    serverIf: sides[1]!.name,
  };
}

function addressPair(a: string, aIf: string, aIp: string, b: string, bIf: string, bIp: string): void {
  for (const [ns, dev, mine, peer] of [
    [a, aIf, aIp, bIp],
    [b, bIf, bIp, aIp],
  ] as const) {
    ip(["-n", ns, "addr", "add", `${mine}/32`, "dev", dev]);
    ip(["-n", ns, "link", "set", dev, "up"]);
    ip(["-n", ns, "route", "add", `${peer}/32`, "dev", dev, "src", mine]);
  }
}

function nsmEnds(
  label: string,
  conn: Connection,
  clientNs: string,
  ifname: string,
  serverNs: string,
): PathEnds {
  const ipc = conn.context?.ipContext;
  const serverIp = addrHost(ipc?.dstIpAddrs[0] ?? "");
  if (!serverIp) throw new Error(`${label}: the connection carries no destination address`);
  const serverIf = links(serverNs);
  if (serverIf.length !== 1) throw new Error(`${label}: ${serverNs} holds ${serverIf.join(", ")}`);
  return { label, clientNs, serverNs, serverIp, clientIf: ifname, serverIf: serverIf[0]! };
}

interface PathThroughput {
  path: PathKind;
  nsm: IperfRun[];
  base: IperfRun[];
  mtu: number;
  nsmShape: string;
  baseShape: string;
  clientRoutes: string;
}

async function throughputPhase(
  kernel: Mesh,
  topo: Topology,
  tracked: Tracked[],
): Promise<Map<PathKind, PathThroughput>> {
  const tl = net.add("tl");
  const tr = net.add("tr");
  const nsc = newClient(`${net.prefix}-tput`, kernel, tl);
  const nscR = newClient(`${net.prefix}-tputr`, kernel, tr);
  const servers: (Tracked & { child: ChildProcess })[] = [];
  try {
    const ifname = `${net.prefix}t`;
    const cl = await nsc.request({ service: kernel.service.local, ifname });
    const cr = await nscR.request({ service: kernel.service.remote, ifname });
    const nsmLocal = nsmEnds("NSM veth", cl, tl, ifname, topo.e1);
    const nsmRemote = nsmEnds("NSM VXLAN", cr, tr, ifname, topo.e2);
    const mtuL = linkDetails(tl, ifname).mtu;
    const mtuR = linkDetails(tr, ifname).mtu;
    const bl1 = net.add("bl1");
    const bl2 = net.add("bl2");
    const bn1 = net.add("bn1");
    const bn2 = net.add("bn2");
    const br1 = net.add("br1");
    const br2 = net.add("br2");
    net.wire(bn1, "198.18.0.1/24", bn2, "198.18.0.2/24", "w");
    const baseLocal = handVeth(bl1, bl2, mtuL);
    const baseRemote = handVxlan(bn1, br1, bn2, br2, mtuR);
    const pairs = new Map<PathKind, [PathEnds, PathEnds, number]>([
      ["local", [nsmLocal, baseLocal, mtuL]],
      ["remote", [nsmRemote, baseRemote, mtuR]],
    ]);
    const out = new Map<PathKind, PathThroughput>();
    for (const [path, [a, b, mtu]] of pairs) {
      for (const e of [a, b]) {
        if (!ping(e.clientNs, e.serverIp))
          throw new Error(`${e.label}: no ping from ${e.clientNs} to ${e.serverIp}`);
        for (const [ns, dev] of [
          [e.clientNs, e.clientIf],
          [e.serverNs, e.serverIf],
        ] as const) {
          const m = linkDetails(ns, dev).mtu;
          if (m !== mtu) throw new Error(`${e.label}: ${dev} in ${ns} has MTU ${m}, expected ${mtu}`);
        }
      }
      const nsmShape = linkDetails(a.clientNs, a.clientIf).shape;
      const baseShape = linkDetails(b.clientNs, b.clientIf).shape;
      const clientRoutes = ip(["-n", a.clientNs, "route", "show"]).trim().replace(/\s+/g, " ");
      out.set(path, { path, nsm: [], base: [], mtu, nsmShape, baseShape, clientRoutes });
      console.error(`  ${path}: MTU ${mtu}; NSM client routes: ${clientRoutes}`);
      if (nsmShape !== baseShape)
        console.error(
          `  WARNING ${path}: link details differ\n    NSM:  ${nsmShape}\n    hand: ${baseShape}`,
        );
    }
    for (const [a, b] of pairs.values()) for (const e of [a, b]) servers.push(await iperfServer(e));
    const all = [...tracked, ...servers.map((s) => ({ name: s.name, pid: s.pid }))];
    const ncpu = cpus().length;
    for (let rep = 0; rep < cfg.iperfReps; rep++) {
      for (const [path, [a, b]] of pairs) {
        const res = out.get(path)!;
        // Counterbalanced: A B, then B A, … so a drift over time weighs on both alike.
        const order = rep % 2 === 0 ? [a, b] : [b, a];
        for (let repeats = 0; ; repeats++) {
          const runs: IperfRun[] = [];
          let disturbed = 0;
          for (const e of order) {
            const s0 = snapshot(all);
            runs.push(await iperfClient(e));
            const d = cpuDelta(s0, snapshot(all));
            disturbed = Math.max(disturbed, d.others / (d.wallMs * ncpu));
          }
          if (disturbed > cfg.disturbedMachineShare && repeats < cfg.maxRepeats) {
            repeatedThroughputPairs++;
            console.error(
              `  ${path} rep ${rep + 1}: other processes used ${fmt(100 * disturbed)}% of the machine; pair repeated`,
            );
            continue;
          }
          const [ra, rb] = order[0] === a ? [runs[0]!, runs[1]!] : [runs[1]!, runs[0]!];
          res.nsm.push(ra);
          res.base.push(rb);
          console.error(
            `  ${path} rep ${rep + 1}: NSM ${fmt(ra.gbps)} Gbit/s (${ra.retransmits} retr), ` +
              `hand-built ${fmt(rb.gbps)} Gbit/s (${rb.retransmits} retr)`,
          );
          break;
        }
      }
    }
    return out;
  } finally {
    for (const s of servers) {
      s.child.kill("SIGTERM");
      helpers.delete(s.child);
    }
    await nsc.closeAll();
    await nscR.closeAll();
  }
}

// ---- output ----

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const results: Record<string, number> = {};
const put = (key: string, value: number): void => {
  results[key] = Number(value.toPrecision(6));
};
const keyOf = (s: string): string => s.replace(/[^a-z0-9]+/gi, "_").replace(/^_|_$/g, "");

// ---- main ----

async function main(): Promise<void> {
  const t0 = performance.now();
  if (cpuProfDir) mkdirSync(resolve(cpuProfDir), { recursive: true });
  const load0 = loadavg()[0]!;
  if (!launcherUsesDist() && process.env.NSM_FROM_SOURCE !== "1") {
    console.error("bench: dist/ is older than src/: node scripts/build.mjs");
    execFileSync(process.execPath, [join(repoRoot, "scripts", "build.mjs")], {
      cwd: repoRoot,
      stdio: "inherit",
    });
  }
  try {
    execFileSync("iperf3", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("iperf3 is not installed (Debian: apt-get install iperf3)");
  }
  console.error(`bench: namespaces ${net.prefix}-*, sockets in ${tmp}`);
  const node1 = net.add("n1");
  const node2 = net.add("n2");
  const e1 = net.add("e1");
  const e2 = net.add("e2");
  const pods = Array.from({ length: cfg.pods }, (_, i) => net.add(`p${i}`));
  net.wire(node1, "198.18.0.1/24", node2, "198.18.0.2/24", "u");
  const topo: Topology = { node1, node2, e1, e2, pods };
  const [kernel, noop] = await Promise.all([startMesh("kernel", topo, 5000), startMesh("noop", topo, 5010)]);
  const meshes = [kernel, noop];
  const all = [...kernel.procs, ...noop.procs];
  const fromDist = all.filter((p) => p.fromDist).length / all.length;
  const mode =
    fromDist === 1
      ? "components run from dist/ (transpiled JS)"
      : fromDist === 0
        ? "components run through tsx (dist/ missing or older than src/)"
        : "WARNING: some components ran from dist/, others through tsx (src/ changed during start-up)";
  console.error(`bench: ${mode}`);
  await untilServing(kernel, pods[0]!);
  await untilServing(noop, pods[0]!);
  console.error(`bench: topology up in ${fmt((performance.now() - t0) / 1000)} s`);

  console.error("bench: connection setup, kernel and noop rounds interleaved");
  const points: Point[] = [];
  for (const path of ["local", "remote"] as const)
    for (const c of cfg.concurrency)
      if (!onlyPoints || onlyPoints.includes(`${path}:${c}`))
        points.push(await setupPoint(path, c, meshes, pods));

  let tput = new Map<PathKind, PathThroughput>();
  if (!noThroughput) {
    console.error("bench: throughput (iperf3)");
    tput = await throughputPhase(kernel, topo, trackedOf(meshes));
  }

  // ---- table ----
  const cpuInfo = cpus();
  console.log(
    `NSM kernel data plane — ${cpuInfo.length} CPUs (${cpuInfo[0]?.model ?? "?"}), node ${process.version}, ` +
      `${new Date().toISOString()}${quick ? " — QUICK RUN" : ""}`,
  );
  console.log(`${mode}; load average (1 min) at start ${load0.toFixed(2)}`);
  console.log(
    `${cfg.pods} client pods; a round = ${cfg.pods} pods × N interface names, all held, then closed and ` +
      `drained; ${cfg.rounds} rounds per point, kernel and noop interleaved. p50/p99 over all rounds' samples; ` +
      `setups/s = median of rounds.`,
  );
  printTable(
    "Connection setup (Request → response at the client): forwarder kernel vs forwarder noop (no data plane)",
    [
      "path",
      "in flight",
      "setups",
      "p50 ms",
      "noop",
      "+ms",
      "p99 ms",
      "noop",
      "setups/s",
      "noop",
      "close p50",
      "noop",
      "close p99",
      "noop",
      "drain ms",
    ],
    points.map((p) => [
      p.path,
      String(p.c),
      String(p.kernel.samples),
      fmt(p.kernel.p50),
      fmt(p.noop.p50),
      fmt(p.kernel.p50 - p.noop.p50),
      fmt(p.kernel.p99),
      fmt(p.noop.p99),
      fmt(p.kernel.perS),
      fmt(p.noop.perS),
      fmt(p.kernel.closeP50),
      fmt(p.noop.closeP50),
      fmt(p.kernel.closeP99),
      fmt(p.noop.closeP99),
      fmt(p.kernel.drainMs),
    ]),
  );
  console.log(
    "drain = from the last Close answered to no interface left in the client and NSE pods (median of rounds)",
  );

  const comps = ["nsmgr-1", "nsmgr-2", "fwd-1", "fwd-2", "nse-local", "nse-remote", benchKey];
  printTable(
    "CPU per setup, ms (user+system over the measured setup rounds; sys = kernel time of the forwarder; " +
      "others = user-space processes outside this benchmark)",
    ["path", "in flight", "mesh", ...comps, "fwd-1 sys", "fwd-2 sys", "total", "others"],
    points.flatMap((p) =>
      [p.kernel, p.noop].map((m) => {
        const vals = comps.map((n) => m.cpuMsPerSetup.get(n) ?? 0);
        let total = 0;
        for (const v of m.cpuMsPerSetup.values()) total += v;
        return [
          p.path,
          String(p.c),
          m.mesh,
          ...vals.map(fmt),
          fmt(m.sysMsPerSetup.get("fwd-1") ?? 0),
          fmt(m.sysMsPerSetup.get("fwd-2") ?? 0),
          fmt(total),
          fmt(m.othersMsPerSetup),
        ];
      }),
    ),
  );

  printTable(
    `Forwarder event loop blocked in sendmsg(2) (rtnetlink requests run inside it, kernel waits included), ` +
      `% of wall time; /proc/<pid>/syscall sampled every ${cfg.syscallSampleMs} ms, median of rounds`,
    ["path", "in flight", "mesh", "fwd-1 setup", "fwd-2 setup", "fwd-1 close+drain", "fwd-2 close+drain"],
    points.flatMap((p) =>
      [p.kernel, p.noop].map((m) => [
        p.path,
        String(p.c),
        m.mesh,
        ...[m.sendmsgShare, m.sendmsgShareClose].flatMap((x) =>
          ["fwd-1", "fwd-2"].map((f) => `${fmt(100 * (x.get(f) ?? 0))}%`),
        ),
      ]),
    ),
  );

  const tp = [...tput.values()];
  const stats = (runs: IperfRun[]) => ({
    med: median(runs.map((r) => r.gbps)),
    min: Math.min(...runs.map((r) => r.gbps)),
    max: Math.max(...runs.map((r) => r.gbps)),
    retr: median(runs.map((r) => r.retransmits)),
    sndCpu: median(runs.map((r) => r.senderCpuPct)),
    rcvCpu: median(runs.map((r) => r.receiverCpuPct)),
  });
  printTable(
    `Throughput: iperf3 -t ${cfg.iperfSeconds}, 1 TCP stream, ${cfg.iperfReps} runs per path, NSM and hand-built ` +
      `alternating (A B B A …); Gbit/s median (min..max)`,
    [
      "path",
      "MTU",
      "NSM Gbit/s",
      "(min..max)",
      "hand-built Gbit/s",
      "(min..max)",
      "ratio",
      "pair ratios med",
      "retr NSM",
      "retr hand",
      "cpu% snd/rcv NSM",
      "hand",
    ],
    tp.map((t) => {
      const a = stats(t.nsm);
      const b = stats(t.base);
      const pairRatios = t.nsm.map((r, i) => r.gbps / t.base[i]!.gbps);
      return [
        `${t.path} (${t.path === "local" ? "veth" : "VXLAN"})`,
        String(t.mtu),
        fmt(a.med),
        `${fmt(a.min)}..${fmt(a.max)}`,
        fmt(b.med),
        `${fmt(b.min)}..${fmt(b.max)}`,
        (a.med / b.med).toFixed(3),
        median(pairRatios).toFixed(3),
        fmt(a.retr),
        fmt(b.retr),
        `${fmt(a.sndCpu)}/${fmt(a.rcvCpu)}`,
        `${fmt(b.sndCpu)}/${fmt(b.rcvCpu)}`,
      ];
    }),
  );
  for (const t of tp)
    if (t.nsmShape !== t.baseShape)
      console.log(
        `WARNING ${t.path}: NSM and hand-built links differ:\n  NSM:  ${t.nsmShape}\n  hand: ${t.baseShape}`,
      );

  const pt = (path: PathKind, c: number): Point | undefined =>
    points.find((p) => p.path === path && p.c === c);
  const tg = cfg.targets;
  const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
  const ratio = (path: PathKind): number | undefined => {
    const t = tput.get(path);
    return t ? stats(t.nsm).med / stats(t.base).med : undefined;
  };

  // The kernel forwarder's extra cost per local setup over the noop forwarder (closed loop, 10 in flight:
  // the difference of the two inverse rates), against the kernel's own cost of the same rtnetlink requests.
  const l10 = pt("local", 10);
  const extra = l10 ? 1000 / l10.kernel.perS - 1000 / l10.noop.perS : undefined;
  const opMedians = l10?.ops
    ? localSetupOps.map((o) => ({
        ...o,
        med: quantile(l10.ops!.get(o.key)!, 0.5),
        p90: quantile(l10.ops!.get(o.key)!, 0.9),
      }))
    : undefined;
  const opsMs = opMedians?.reduce((sum, o) => sum + o.med, 0);
  if (opMedians && opsMs !== undefined && extra !== undefined) {
    const n = l10!.ops!.get("veth_create")!.length;
    printTable(
      `The kernel forwarder's rtnetlink requests for one local setup, each timed alone in this process ` +
        `(same run, ${n} setups in rounds shaped like the local 10-in-flight rounds), ms median (p90)`,
      ["request", "median", "p90"],
      [
        ...opMedians.map((o) => [o.what, o.med.toFixed(3), o.p90.toFixed(3)]),
        ["sum of medians: the kernel's own cost per setup", opsMs.toFixed(3), ""],
      ],
    );
    console.log(
      `kernel forwarder's extra per local setup, 10 in flight: 1000/${fmt(l10!.kernel.perS)} − 1000/` +
        `${fmt(l10!.noop.perS)} setups/s = ${extra.toFixed(3)} ms = ${(extra / opsMs).toFixed(2)} × the requests' ` +
        `own ${opsMs.toFixed(3)} ms`,
    );
  }

  const targetRows: string[][] = [];
  for (const [path, limit] of [
    ["local", tg.localP50Ms],
    ["remote", tg.remoteP50Ms],
  ] as const) {
    const p = pt(path, 10);
    if (p)
      targetRows.push([
        `${path} setup p50 (10 in flight) ≤ ${limit} ms`,
        fmt(p.kernel.p50),
        verdict(p.kernel.p50 <= limit),
      ]);
  }
  if (extra !== undefined && opsMs !== undefined)
    targetRows.push([
      `local extra over noop ÷ kernel's own ops (10 in flight) ≤ ${tg.extraOverOps}`,
      (extra / opsMs).toFixed(2),
      verdict(extra / opsMs <= tg.extraOverOps),
    ]);
  for (const path of ["local", "remote"] as const) {
    const r = ratio(path);
    if (r !== undefined)
      targetRows.push([
        `${path} throughput ratio ≥ ${tg.throughputRatio}`,
        r.toFixed(3),
        verdict(r >= tg.throughputRatio),
      ]);
  }
  printTable("Targets", ["target", "measured", "status"], targetRows);
  const disturbedPoints = points.flatMap((p) =>
    [p.kernel, p.noop]
      .filter((m) => {
        let ours = 0;
        for (const v of m.cpuMsPerSetup.values()) ours += v;
        return m.othersMsPerSetup > cfg.disturbedShare * ours;
      })
      .map((m) => `${m.mesh} ${p.path} c=${p.c}`),
  );
  console.log(
    `contention: ${repeatedSetupRounds} setup round(s) and ${repeatedThroughputPairs} throughput pair(s) repeated ` +
      `because other processes were busy` +
      (disturbedPoints.length > 0
        ? `; WARNING: still disturbed after repeats: ${disturbedPoints.join(", ")} — rerun on an idle machine`
        : ""),
  );

  // ---- JSON ----
  const headline: [string, number | undefined][] = [
    ["local_setup_p50_ms_c10", pt("local", 10)?.kernel.p50],
    ["remote_setup_p50_ms_c10", pt("remote", 10)?.kernel.p50],
    ["local_throughput_ratio", ratio("local")],
    ["remote_throughput_ratio", ratio("remote")],
    ["local_kernel_extra_ms_per_setup", extra],
    ["local_kernel_ops_ms_per_setup", opsMs],
    ["local_kernel_extra_over_ops", extra !== undefined && opsMs ? extra / opsMs : undefined],
  ];
  for (const [k, v] of headline) if (v !== undefined) put(k, v);
  for (const o of opMedians ?? []) put(`local_kernel_op_${o.key}_ms`, o.med);
  if (l10?.ops) put("local_kernel_ops_setups_timed", l10.ops.get("veth_create")!.length);
  for (const p of points) {
    for (const m of [p.kernel, p.noop]) {
      const k = `${m.mesh === "noop" ? "noop_" : ""}${p.path}`;
      put(`${k}_setup_p50_ms_c${p.c}`, m.p50);
      put(`${k}_setup_p99_ms_c${p.c}`, m.p99);
      put(`${k}_setups_per_s_c${p.c}`, m.perS);
      put(`${k}_setups_per_s_min_round_c${p.c}`, m.perSMin);
      put(`${k}_setups_per_s_max_round_c${p.c}`, m.perSMax);
      put(`${k}_close_p50_ms_c${p.c}`, m.closeP50);
      put(`${k}_close_p99_ms_c${p.c}`, m.closeP99);
      put(`${k}_closes_per_s_c${p.c}`, m.closesPerS);
      put(`${k}_setup_samples_c${p.c}`, m.samples);
      put(`${k}_failed_calls_c${p.c}`, m.failedCalls);
      put(`${k}_checked_calls_c${p.c}`, m.checkedCalls);
      let total = 0;
      for (const v of m.cpuMsPerSetup.values()) total += v;
      put(`${k}_cpu_ms_per_setup_c${p.c}_all_processes`, total);
      put(`${k}_cpu_ms_per_setup_c${p.c}_other_load`, m.othersMsPerSetup);
      for (const n of ["fwd-1", "fwd-2"]) {
        put(`${k}_cpu_ms_per_setup_c${p.c}_${keyOf(n)}`, m.cpuMsPerSetup.get(n) ?? 0);
        put(`${k}_sys_cpu_ms_per_setup_c${p.c}_${keyOf(n)}`, m.sysMsPerSetup.get(n) ?? 0);
      }
      for (const f of ["fwd-1", "fwd-2"]) {
        put(`${k}_${keyOf(f)}_sendmsg_blocked_pct_setup_c${p.c}`, 100 * (m.sendmsgShare.get(f) ?? 0));
        put(`${k}_${keyOf(f)}_sendmsg_blocked_pct_close_c${p.c}`, 100 * (m.sendmsgShareClose.get(f) ?? 0));
      }
      if (m.mesh === "kernel") {
        put(`${p.path}_teardown_drain_ms_c${p.c}`, m.drainMs);
        put(`${p.path}_teardown_drain_max_ms_c${p.c}`, m.drainMsMax);
      }
    }
    put(`${p.path}_setup_p50_added_by_dataplane_ms_c${p.c}`, p.kernel.p50 - p.noop.p50);
  }
  for (const t of tp) {
    const a = stats(t.nsm);
    const b = stats(t.base);
    put(`${t.path}_nsm_throughput_gbit_s`, a.med);
    put(`${t.path}_nsm_throughput_min_gbit_s`, a.min);
    put(`${t.path}_nsm_throughput_max_gbit_s`, a.max);
    put(`${t.path}_baseline_throughput_gbit_s`, b.med);
    put(`${t.path}_baseline_throughput_min_gbit_s`, b.min);
    put(`${t.path}_baseline_throughput_max_gbit_s`, b.max);
    put(`${t.path}_throughput_pair_ratio_median`, median(t.nsm.map((r, i) => r.gbps / t.base[i]!.gbps)));
    put(`${t.path}_nsm_retransmits_median`, a.retr);
    put(`${t.path}_baseline_retransmits_median`, b.retr);
    put(`${t.path}_mtu_bytes`, t.mtu);
    put(`${t.path}_link_details_match`, t.nsmShape === t.baseShape ? 1 : 0);
  }
  put("target_local_setup_p50_ms", tg.localP50Ms);
  put("target_remote_setup_p50_ms", tg.remoteP50Ms);
  put("target_throughput_ratio", tg.throughputRatio);
  put("target_local_kernel_extra_over_ops", tg.extraOverOps);
  put("iperf3_seconds_per_run", cfg.iperfSeconds);
  put("iperf3_runs_per_path", cfg.iperfReps);
  put("client_pods", cfg.pods);
  put("components_from_dist", fromDist);
  put("setup_rounds_repeated_for_competing_load", repeatedSetupRounds);
  put("throughput_pairs_repeated_for_competing_load", repeatedThroughputPairs);
  put("load_avg_1min_at_start", load0);
  put("cpus", cpuInfo.length);
  put("run_duration_s", (performance.now() - t0) / 1000);

  writeResults(resultsFile, results, quick || partial);
}

const made = (): string[] => net.names;
let ourNamespaces: string[] = [];
try {
  await main();
} catch (err) {
  console.error("bench failed:", err);
  for (const p of procs)
    if (p.output().trim()) console.error(`--- ${p.name} (pid ${p.pid}) output ---\n${p.output()}`);
  process.exitCode = 1;
} finally {
  ourNamespaces = made();
  for (const p of [...procs].reverse()) await p.stop().catch(() => p.killNow());
  teardownNow();
  const left = net.leftovers();
  if (left.length > 0) {
    console.error(`bench: namespaces left behind: ${left.join(", ")}`);
    process.exitCode = 1;
  } else
    console.error(`bench: ${ourNamespaces.length} namespaces of ${net.prefix} deleted, processes stopped`);
  if (cpuProfDir)
    console.error(
      `bench: CPU profiles in ${resolve(cpuProfDir)} (${procs.map((p) => `${p.name}=${p.pid}`).join(" ")})`,
    );
}
