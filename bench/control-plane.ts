// `npm run bench:control-plane`: NSM control-plane cost with the data plane stubbed out (`forwarder noop`).
// Topology of real processes (bench/lib/control-plane-mesh.ts): registry (memory store), nsmgr-1 and nsmgr-2
// (unix + tcp), a noop forwarder on each, an icmp-responder NSE per node ("bench-local" on nsmgr-1,
// "bench-remote" on nsmgr-2). The mesh runs secure, as components do by default: a throwaway trust domain
// (spiffe://bench.test) gives every process its X.509-SVID, so every link is mTLS (unix sockets too), every
// hop signs and checks ES256 tokens and enforces its policies; the clients in this process share one SVID of
// the same domain. NsmClients in this process request through nsmgr-1 and measure:
//   - connection setup latency (Request → response at the client) p50/p99 and setups/s at 1, 10 and 100
//     requests in flight, local and remote; Close is timed separately, after each round;
//   - the bare-transport baseline at the same concurrency: a unary Close of an unknown connection id to
//     nsmgr-1 (a no-op that returns Empty), so setup latency ÷ transport latency can be read off;
//   - RSS of nsmgr-1 idle and with 1,000 live local connections, on the fresh nsmgr and again after the load;
//   - the cost of security: after the phases above the mesh is stopped and the same topology started
//     insecure (NSM_INSECURE=true: plaintext, no tokens checked, no policies), from the same build, and the
//     setup points at 1 and 10 in flight and the transport baseline are measured again by the same method;
//     mtls_over_insecure_setup_ratio_c10_{local,remote} = secure setup p50 ÷ insecure setup p50 at 10 in
//     flight, mtls_over_insecure_setup_ratio_c10 = the worse (larger) of the two. Every other figure (and the
//     headline) is the secure mesh's; the insecure mesh's carry an `insecure_` prefix.
// The transport floors are plaintext relays (grpc-js, node:http2): against the secure mesh, setup ÷ floor
// includes what TLS and tokens cost.
//   - the cost of telemetry (issue 16), last: three secure meshes up at once — telemetry off (the baseline),
//     tracing on (every component and the in-process NSC export OTLP/gRPC to a real Jaeger this run starts)
//     and metrics on (every component serves /metrics, scraped every 500 ms by a real Prometheus) — measured
//     in interleaved rounds (off, tracing, metrics; then tracing, metrics, off; …) at 1 and 10 in flight,
//     local and remote, so that the machine's drift hits every variant alike. Keys tracing_on_*, metrics_on_*,
//     telemetry_off_*, and *_over_off_* ratios; every figure above is untouched by it (its meshes start after
//     the others stopped). Without Jaeger's binary (scripts/build-jaeger.sh) the tracing variant is skipped,
//     without Prometheus the metrics mesh is not scraped; the run says so.
// Components start through bin/nsm.js, which runs the transpiled dist/ when it is newer than src/ (`npm run
// build`, run first by this benchmark when dist/ is stale) and the sources through tsx otherwise; the
// transport-floor relays run from the same build (dist/bench/, emitted by scripts/build.mjs). The run reports
// both (components_from_dist, relays_from_dist) and fails rather than compare a floor and components that ran
// differently.
// CPU time of every process is read per round from /proc; a round during which other jobs on the machine
// used more than 10% as much CPU as the mesh is repeated (at most 3 times per point).
// Prints a table and writes bench/results/control-plane.json. Method and results: bench/README.md.
// `--quick` runs a scaled-down pass and writes no JSON; `--telemetry-only` runs only the cost of telemetry
// (and writes no JSON either). `--cpu-prof <dir>` runs every component under
// `node --cpu-prof` (CPU.<date>.<time>.<pid>.*.cpuprofile written to <dir> as each stops; pids are printed).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Connection } from "../src/api/connection.js";
import { NetworkServiceRequest, NetworkServiceService } from "../src/api/networkservice.js";
import { GrpcClient } from "../src/core/client.js";
import { NsmClient } from "../src/components/client.js";
import type { Security } from "../src/components/security.js";
import { emptyConnection } from "../src/networkservice/updatepath/updatepath.js";
import { startTracing } from "../src/observability/tracing/tracing.js";
import { formatRfc3339Nano, tokenExpiresKey, tokenKey, tokenMetadata } from "../src/security/token.js";
import { jaegerBinary, startJaeger, type Jaeger, type JaegerTrace } from "../test/helpers/jaeger.js";
import { prometheusBin, startPrometheus, type Prometheus } from "../test/helpers/prometheus.js";
import { H2Caller, grpcFrame, grpcMessage } from "./lib/h2call.js";
import {
  BenchMesh,
  PidCpu,
  benchTrustDomain,
  childrenNamed,
  launcherUsesDist,
  median,
  percentile,
  relayBuildIsFresh,
  type MeshOptions,
  type MeshSecurity,
  type MeshTelemetry,
  type Proc,
} from "./lib/control-plane-mesh.js";
import { checkErrors, fmt, printTable, writeResults, type RoundResult } from "./lib/report.js";

const quick = process.argv.includes("--quick");
const telemetryOnly = process.argv.includes("--telemetry-only");
const profIdx = process.argv.indexOf("--cpu-prof");
const cpuProfDir = profIdx > 0 ? process.argv[profIdx + 1] : undefined;

const cfg = {
  concurrency: [1, 10, 100] as const,
  /** In flight at the insecure mesh's points (the cost of security): the ratio's 10, and 1. */
  securityConcurrency: [1, 10] as const,
  rounds: 3,
  /** Setups per measured round, by concurrency: several hundred per point, more where 100 are in flight. */
  setupsPerRound: (c: number): number => (quick ? 60 : c >= 100 ? 600 : 300),
  /** Setups (then closed) before the measured rounds of each point. */
  warmupSetups: (c: number): number => (quick ? Math.max(c, 30) : Math.max(2 * c, 150)),
  transportCallsPerRound: quick ? 300 : 2_000,
  transportWarmup: quick ? 100 : 500,
  memoryConnections: 1_000,
  memoryConcurrency: 50,
  /** Let the nsmgr settle before reading its RSS. */
  memorySettleMs: 1_000,
  readyTimeoutMs: 60_000,
  /**
   * A measured round during which processes outside the mesh used more than this share of the mesh's own CPU
   * (another job on the machine) is discarded and run again, at most `maxRepeats` times per point.
   */
  disturbedShare: 0.1,
  maxRepeats: 3,
  targets: { localP50Ms: 5, remoteP50Ms: 10, setupsPerS: 300, rssMb: 150 },
  /** Goals relative to figures of the same run: setup p50 ÷ grpc-js floor p50 at 10 in flight (at most). */
  overFloorMax: 1.5,
  /** …secure (mTLS + tokens) setup p50 ÷ insecure setup p50 at 10 in flight (at most), local and remote. */
  mtlsOverInsecureMax: 1.3,
  /** …and relative to upstream Go NSM (at least this many times its throughput, and less CPU per setup). */
  overUpstreamMin: 4,
  /** The cost of telemetry: interleaved rounds per variant and point, and setups per round. */
  telemetry: {
    concurrency: [1, 10] as const,
    rounds: quick ? 3 : 6,
    setupsPerRound: quick ? 60 : 250,
    /**
     * After every round (its Closes answered), before its CPU is read: spans batched in the components (1 s
     * schedule) are exported and stored by then, so that work is the tracing round's and not the next one's.
     */
    settleMs: 1_500,
    scrapeIntervalMs: 500,
    /** Traces of each path read back from Jaeger at the end, to check they are whole. */
    tracesChecked: 20,
  },
};

/**
 * Upstream Go NSM (sdk v1.18.0 sandbox) on this kind of machine, by the same method: QUOTED from
 * /work/shared/spec/nsm-security-interop.md §6 (median of 3 runs), not measured by this benchmark.
 */
const upstreamGo = {
  source: "/work/shared/spec/nsm-security-interop.md §6 (Go sdk v1.18.0 sandbox, median of 3 runs)",
  localSetupsPerSC100: 119,
  remoteSetupsPerSC100: 66.7,
  localCpuMsPerSetupC10: 11.2,
  remoteCpuMsPerSetupC10: 20.5,
};

const benchDir = dirname(fileURLToPath(import.meta.url));
const resultsFile = join(benchDir, "results", "control-plane.json");
const services = { local: "bench-local", remote: "bench-remote" } as const;
type Kind = keyof typeof services;

/** Every mesh this run started (the secure one, then the insecure one), for the exit handlers. */
const meshes: BenchMesh[] = [];
process.on("exit", () => {
  for (const m of meshes) m.killNow();
});
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(
      `bench: ${sig}, stopping component processes and removing ${meshes.map((m) => m.dir).join(", ")}`,
    );
    for (const m of meshes) m.killNow();
    process.exit(130);
  });
}

/** Makes the Security of an in-process client (NsmClient, GrpcClient) of a mesh; see BenchMesh.clientSecurity. */
type SecurityFor = (name: string) => Security;

const results: Record<string, number> = {};
const put = (key: string, value: number): void => {
  results[key] = Number(value.toPrecision(6));
};

// ---- load generation ----

/** Runs `total` operations with `c` workers, each keeping one operation in flight (closed loop). */
async function closedLoop(
  c: number,
  total: number,
  op: (worker: number, seq: number) => Promise<void>,
): Promise<RoundResult> {
  const latenciesMs: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async (_, w) => {
      for (let seq = next++; seq < total; seq = next++) {
        const s = performance.now();
        try {
          await op(w, seq);
          latenciesMs.push(performance.now() - s);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  return { latenciesMs, wallMs: performance.now() - t0, errors, firstError };
}

/** c NsmClients (one per worker, each with its own channel to nsmgr-1), and the connections they hold. */
class ClientSet {
  readonly clients: NsmClient[];
  private readonly open: { client: NsmClient; id: string }[] = [];

  constructor(tag: string, c: number, nsmgrUrl: string, security: SecurityFor) {
    this.clients = Array.from({ length: c }, (_, i) => {
      const name = `bench-${tag}-w${i}`;
      return new NsmClient({ name, nsmgrUrl, security: security(name) });
    });
  }

  get size(): number {
    return this.open.length;
  }

  setups(total: number, service: string): Promise<RoundResult> {
    return closedLoop(this.clients.length, total, async (w) => {
      const client = this.clients[w]!;
      const conn = await client.request({ service });
      this.open.push({ client, id: conn.id });
    });
  }

  /** Closes every held connection, `c` at a time; returns the Close latencies. */
  closeAll(): Promise<RoundResult> {
    const held = this.open.splice(0);
    return closedLoop(this.clients.length, held.length, async (_w, seq) => {
      const h = held[seq]!;
      await h.client.close(h.id);
    });
  }

  async dispose(): Promise<void> {
    await this.closeAll();
    await Promise.all(this.clients.map((c) => c.closeAll()));
  }
}

// ---- CPU accounting per process over a phase ----

/** A process whose CPU time a round reads: a component or relay (Proc), or a backend (PidCpu). */
type CpuSource = Pick<Proc, "name" | "cpuMs">;

function cpuSnapshot(procs: readonly CpuSource[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of procs) m.set(p.name, p.cpuMs());
  const self = process.cpuUsage();
  m.set("bench (clients)", (self.user + self.system) / 1000);
  m.set(machineKey, machineBusyMs());
  return m;
}

const machineKey = "machine";
const othersKey = "others";

/** CPU time the whole machine spent busy since boot (ms), from /proc/stat; shows competing load. */
function machineBusyMs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100;
}

/** Replaces the machine total by what processes other than ours used (never below 0). */
function withOthers(cpu: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  let ours = 0;
  for (const [k, v] of cpu) {
    if (k === machineKey) continue;
    out.set(k, v);
    ours += v;
  }
  out.set(othersKey, Math.max(0, (cpu.get(machineKey) ?? ours) - ours));
  return out;
}

function cpuDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) d.set(k, v - (before.get(k) ?? v));
  return d;
}

/** Whether competing load disturbed a round; logs and counts it. */
let discardedRounds = 0;
function disturbed(what: string, delta: Map<string, number>, repeatsLeft: boolean): boolean {
  const split = withOthers(delta);
  const others = split.get(othersKey) ?? 0;
  let ours = 0;
  for (const [k, v] of split) if (k !== othersKey) ours += v;
  if (others <= cfg.disturbedShare * ours || !repeatsLeft) return false;
  discardedRounds++;
  console.error(
    `  ${what}: other processes used ${fmt(others)} ms CPU against the mesh's ${fmt(ours)} ms; round repeated`,
  );
  return true;
}

// ---- phases ----

/** One mesh of the run, started by startTopology. */
interface Topology {
  security: MeshSecurity;
  mesh: BenchMesh;
  n1: { proc: Proc; url: string; publicUrl: string };
  /** The component processes (CPU accounting). */
  procs: Proc[];
  /** Share of the components that ran from dist/. */
  fromDist: number;
  clientSecurity: SecurityFor;
  /** A mesh of the cost of telemetry: how its log lines name it ("tracing on", …). */
  label?: string;
}

/** How a mesh's log lines and checks name its points: the secure mesh's as before, the others prefixed. */
const tagOf = (t: Topology): string =>
  t.label !== undefined ? `${t.label} ` : t.security === "insecure" ? "insecure " : "";

interface PointResult {
  kind: Kind;
  c: number;
  samples: number;
  p50: number;
  p99: number;
  perS: number;
  perSMin: number;
  perSMax: number;
  closeP50: number;
  closeP99: number;
  closesPerS: number;
  cpuMsPerSetup: Map<string, number>;
  /** Failed Requests and Closes over every round of the point (warm-up and repeated rounds included). */
  setupFailed: number;
  setupCalls: number;
  closeFailed: number;
  closeCalls: number;
}

async function setupPoint(kind: Kind, c: number, t: Topology): Promise<PointResult> {
  const set = new ClientSet(`${kind}-c${c}`, c, t.n1.url, t.clientSecurity);
  const service = services[kind];
  const procs = t.procs;
  const label = `${tagOf(t)}${kind} c=${c}`;
  try {
    const failed = { setup: 0, setupCalls: 0, close: 0, closeCalls: 0 };
    const count = (r: RoundResult, what: "setup" | "close", total: number): void => {
      failed[what] += r.errors;
      failed[what === "setup" ? "setupCalls" : "closeCalls"] += total;
    };
    const warm = await set.setups(cfg.warmupSetups(c), service);
    count(warm, "setup", cfg.warmupSetups(c));
    checkErrors(`${label} warm-up`, warm, cfg.warmupSetups(c));
    const warmClosed = await set.closeAll();
    count(warmClosed, "close", warm.latenciesMs.length);
    checkErrors(`${label} warm-up close`, warmClosed, warm.latenciesMs.length);

    const lat: number[] = [];
    const closeLat: number[] = [];
    const rates: number[] = [];
    const closeRates: number[] = [];
    const cpu = new Map<string, number>();
    let setups = 0;
    for (let r = 0, repeats = 0; r < cfg.rounds;) {
      const n = cfg.setupsPerRound(c);
      const before = cpuSnapshot(procs);
      const round = await set.setups(n, service);
      const delta = cpuDelta(before, cpuSnapshot(procs));
      count(round, "setup", n);
      checkErrors(`${label} round ${r + 1}`, round, n);
      const beforeClose = cpuSnapshot(procs);
      const closed = await set.closeAll();
      const closeDelta = cpuDelta(beforeClose, cpuSnapshot(procs));
      count(closed, "close", round.latenciesMs.length);
      checkErrors(`${label} round ${r + 1} close`, closed, round.latenciesMs.length);
      const canRepeat = repeats < cfg.maxRepeats;
      if (
        disturbed(`${label} round ${r + 1}`, delta, canRepeat) ||
        disturbed(`${label} round ${r + 1} close`, closeDelta, canRepeat)
      ) {
        repeats++;
        continue;
      }
      for (const [k, v] of delta) cpu.set(k, (cpu.get(k) ?? 0) + v);
      lat.push(...round.latenciesMs);
      rates.push((round.latenciesMs.length * 1000) / round.wallMs);
      setups += round.latenciesMs.length;
      closeLat.push(...closed.latenciesMs);
      closeRates.push((closed.latenciesMs.length * 1000) / closed.wallMs);
      r++;
    }
    lat.sort((a, b) => a - b);
    closeLat.sort((a, b) => a - b);
    const cpuMsPerSetup = new Map<string, number>();
    for (const [k, v] of withOthers(cpu)) cpuMsPerSetup.set(k, v / setups);
    const res: PointResult = {
      kind,
      c,
      samples: lat.length,
      p50: percentile(lat, 0.5),
      p99: percentile(lat, 0.99),
      perS: median(rates),
      perSMin: Math.min(...rates),
      perSMax: Math.max(...rates),
      closeP50: percentile(closeLat, 0.5),
      closeP99: percentile(closeLat, 0.99),
      closesPerS: median(closeRates),
      cpuMsPerSetup,
      setupFailed: failed.setup,
      setupCalls: failed.setupCalls,
      closeFailed: failed.close,
      closeCalls: failed.closeCalls,
    };
    console.error(
      `  ${label}: p50 ${fmt(res.p50)} ms, p99 ${fmt(res.p99)} ms, ${fmt(res.perS)} setups/s ` +
        `(rounds ${rates.map(fmt).join(", ")}), close p50 ${fmt(res.closeP50)} ms`,
    );
    return res;
  } finally {
    await set.dispose();
  }
}

/** CPU per setup of every process of the point (the mesh's and this one's), competing load left out. */
function cpuTotal(p: PointResult): number {
  let t = 0;
  for (const [k, v] of p.cpuMsPerSetup) if (k !== othersKey) t += v;
  return t;
}

interface TransportResult {
  c: number;
  p50: number;
  p99: number;
  perS: number;
  /** Failed calls, warm-up and repeated rounds included. */
  failed: number;
}

/**
 * Unary Close of an unknown connection id to nsmgr-1: the round trip through gRPC and the chain's head. On the
 * secure mesh over mTLS with a token (as a client's call carries: signed once per audience, then cached);
 * on the insecure mesh plaintext without one.
 */
async function transportPoint(c: number, t: Topology): Promise<TransportResult> {
  const nsmgrUrl = t.n1.url;
  const procs = t.procs;
  const securities = Array.from({ length: c }, (_, w) => t.clientSecurity(`bench-transport-c${c}-w${w}`));
  const clients = securities.map((sec) =>
    t.security === "mtls"
      ? new GrpcClient(nsmgrUrl, sec.channelOptions(), sec.channelCredentials(nsmgrUrl))
      : new GrpcClient(nsmgrUrl),
  );
  const label = `${tagOf(t)}transport c=${c}`;
  try {
    let unique = 0;
    const call = async (w: number): Promise<void> => {
      const client = clients[w]!;
      await client.unary(
        NetworkServiceService.close,
        { ...emptyConnection(), id: `bench-unknown-c${c}-${unique++}` },
        t.security === "mtls"
          ? { metadata: await securities[w]!.callMetadata(undefined, nsmgrUrl, client) }
          : {},
      );
    };
    const warm = await closedLoop(c, cfg.transportWarmup, call);
    let failed = warm.errors;
    checkErrors(`${label} warm-up`, warm, cfg.transportWarmup);
    const lat: number[] = [];
    const rates: number[] = [];
    for (let r = 0, repeats = 0; r < cfg.rounds;) {
      const before = cpuSnapshot(procs);
      const round = await closedLoop(c, cfg.transportCallsPerRound, call);
      failed += round.errors;
      checkErrors(label, round, cfg.transportCallsPerRound);
      const delta = cpuDelta(before, cpuSnapshot(procs));
      if (disturbed(`${label} round ${r + 1}`, delta, repeats < cfg.maxRepeats)) {
        repeats++;
        continue;
      }
      lat.push(...round.latenciesMs);
      rates.push((round.latenciesMs.length * 1000) / round.wallMs);
      r++;
    }
    lat.sort((a, b) => a - b);
    const res = { c, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), perS: median(rates), failed };
    console.error(`  ${label}: p50 ${fmt(res.p50)} ms, p99 ${fmt(res.p99)} ms, ${fmt(res.perS)} calls/s`);
    return res;
  } finally {
    for (const cl of clients) cl.close();
    for (const sec of securities) sec.close();
  }
}

type Flavour = "grpc-js" | "http2";

interface FloorResult {
  flavour: Flavour;
  kind: Kind;
  c: number;
  p50: number;
  p99: number;
  perS: number;
  /** CPU of the relays and the calling clients per Request, ms. */
  cpuMsPerCall: number;
  /** Failed calls, warm-up and repeated rounds included. */
  failed: number;
}

/**
 * The relay chains of a transport floor: the same hops, sockets and process count as each real path.
 * Plaintext, whatever `mesh`'s security: a floor of the transport alone.
 */
async function startRelays(
  mesh: BenchMesh,
  f: Flavour,
): Promise<{ urls: Record<Kind, string>; procs: Proc[] }> {
  const relay = (name: string, on: "unix" | "tcp", next?: string): ReturnType<BenchMesh["relay"]> =>
    mesh.relay(`${f}-${name}`, on, next, f);
  const nseL = await relay("nse-local", "unix");
  const fwdL = await relay("fwd-1-local", "unix", nseL.url);
  const nsmgrL = await relay("nsmgr-1-local", "unix", fwdL.url);
  const nseR = await relay("nse-remote", "unix");
  const fwd2 = await relay("fwd-2", "unix", nseR.url);
  const nsmgr2 = await relay("nsmgr-2", "tcp", fwd2.url);
  const fwd1 = await relay("fwd-1-remote", "unix", nsmgr2.url);
  const nsmgr1 = await relay("nsmgr-1-remote", "unix", fwd1.url);
  return {
    urls: { local: nsmgrL.url, remote: nsmgr1.url },
    procs: [nseL, fwdL, nsmgrL, nseR, fwd2, nsmgr2, fwd1, nsmgr1].map((r) => r.proc),
  };
}

/** Relay chain calls, `c` in flight; CPU is summed over `relays` and this process (the clients). */
async function floorPoint(
  flavour: Flavour,
  kind: Kind,
  c: number,
  relays: readonly CpuSource[],
  callers: ((seq: number) => Promise<void>)[],
): Promise<FloorResult> {
  let unique = 0;
  const call = (w: number): Promise<void> => callers[w]!(unique++);
  const what = `floor ${flavour} ${kind} c=${c}`;
  // Relays start cold: warm them up as long as the mesh was before its own measurements.
  const warmup = Math.max(cfg.warmupSetups(c), cfg.transportWarmup);
  const warm = await closedLoop(c, warmup, call);
  let failed = warm.errors;
  checkErrors(`${what} warm-up`, warm, warmup);
  const perRound = c === 1 ? cfg.setupsPerRound(c) : cfg.transportCallsPerRound;
  const lat: number[] = [];
  const rates: number[] = [];
  let cpuMs = 0;
  let calls = 0;
  for (let r = 0, repeats = 0; r < cfg.rounds;) {
    const before = cpuSnapshot(relays);
    const round = await closedLoop(c, perRound, call);
    failed += round.errors;
    checkErrors(what, round, perRound);
    const delta = cpuDelta(before, cpuSnapshot(relays));
    if (disturbed(`${what} round ${r + 1}`, delta, repeats < cfg.maxRepeats)) {
      repeats++;
      continue;
    }
    for (const [k, v] of withOthers(delta)) if (k !== othersKey) cpuMs += v;
    calls += round.latenciesMs.length;
    lat.push(...round.latenciesMs);
    rates.push((round.latenciesMs.length * 1000) / round.wallMs);
    r++;
  }
  lat.sort((a, b) => a - b);
  const res: FloorResult = {
    flavour,
    kind,
    c,
    p50: percentile(lat, 0.5),
    p99: percentile(lat, 0.99),
    perS: median(rates),
    cpuMsPerCall: cpuMs / calls,
    failed,
  };
  console.error(
    `  ${what}: p50 ${fmt(res.p50)} ms, p99 ${fmt(res.p99)} ms, ${fmt(res.perS)} calls/s, ` +
      `${fmt(res.cpuMsPerCall)} ms CPU per call`,
  );
  return res;
}

/**
 * Both transport floors, every path and concurrency, with requests shaped like `sample` (a setup's reply on
 * mesh `t`: its path carries every hop's token) and a token like a client's to nsmgr-1 (on the secure mesh an
 * ES256 token of the client SVID for nsmgr-1's SPIFFE ID).
 */
async function floorPhase(
  t: Topology,
  sample: Connection,
): Promise<{ floors: FloorResult[]; requestBytes: number; relays: Proc[] }> {
  const security = t.clientSecurity("bench-floor");
  const token = await security.sign(t.security === "mtls" ? [`spiffe://${benchTrustDomain}/nsmgr-1`] : []);
  security.close();
  const request = { connection: sample, mechanismPreferences: sample.mechanism ? [sample.mechanism] : [] };
  const requestBytes = NetworkServiceRequest.encode(request).finish().length;
  const floors: FloorResult[] = [];
  const started: Proc[] = [];
  for (const flavour of ["grpc-js", "http2"] as const) {
    const relays = await startRelays(t.mesh, flavour);
    started.push(...relays.procs);
    try {
      for (const kind of ["local", "remote"] as const) {
        for (const c of cfg.concurrency) {
          const url = relays.urls[kind];
          if (flavour === "grpc-js") {
            const clients = Array.from({ length: c }, () => new GrpcClient(url));
            const callers = clients.map((cl) => async (seq: number): Promise<void> => {
              const connection = { ...sample, id: `floor-${kind}-c${c}-${seq}` };
              await cl.unary(
                NetworkServiceService.request,
                { ...request, connection },
                { metadata: tokenMetadata(token.token, token.expires) },
              );
            });
            try {
              floors.push(await floorPoint(flavour, kind, c, relays.procs, callers));
            } finally {
              for (const cl of clients) cl.close();
            }
          } else {
            const headers = {
              [tokenKey]: token.token,
              [tokenExpiresKey]: formatRfc3339Nano(token.expires),
            };
            const clients = Array.from({ length: c }, () => new H2Caller(url));
            // The same protobuf work per call as the grpc-js clients: encode the request, decode the answer.
            const callers = clients.map((cl) => async (seq: number): Promise<void> => {
              const connection = { ...sample, id: `floor-${kind}-c${c}-${seq}` };
              const frame = grpcFrame(NetworkServiceRequest.encode({ ...request, connection }).finish());
              const res = await cl.call(NetworkServiceService.request.path, frame, headers);
              Connection.decode(grpcMessage(res));
            });
            try {
              floors.push(await floorPoint(flavour, kind, c, relays.procs, callers));
            } finally {
              for (const cl of clients) cl.close();
            }
          }
        }
      }
    } finally {
      await Promise.all(relays.procs.map((p) => p.stop()));
    }
  }
  return { floors, requestBytes, relays: started };
}

interface MemoryResult {
  beforeMb: number;
  liveMb: number;
  afterCloseMb: number;
  live: number;
  openS: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function memoryPhase(label: string, t: Topology): Promise<MemoryResult> {
  const n = cfg.memoryConnections;
  const nsmgr = t.n1.proc;
  const set = new ClientSet(
    `mem-${label.replace(/\W+/g, "-")}`,
    cfg.memoryConcurrency,
    t.n1.url,
    t.clientSecurity,
  );
  try {
    await sleep(cfg.memorySettleMs);
    const beforeMb = nsmgr.memoryMb().rss;
    const opened = await set.setups(n, services.local);
    checkErrors(`memory: opening ${n} connections`, opened, n);
    await sleep(cfg.memorySettleMs);
    const liveMb = nsmgr.memoryMb().rss;
    const live = set.size;
    checkErrors("memory: closing", await set.closeAll(), live);
    await sleep(cfg.memorySettleMs);
    const afterCloseMb = nsmgr.memoryMb().rss;
    console.error(
      `  nsmgr-1 RSS (${label}): before ${fmt(beforeMb)} MB, ${live} live ${fmt(liveMb)} MB, ` +
        `after close ${fmt(afterCloseMb)} MB`,
    );
    return { beforeMb, liveMb, afterCloseMb, live, openS: opened.wallMs / 1000 };
  } finally {
    await set.dispose();
  }
}

/** Retries a local and a remote request until both succeed: every process is registered and reachable. */
async function untilServing(nsmgrUrl: string, security: SecurityFor): Promise<void> {
  const end = Date.now() + cfg.readyTimeoutMs;
  const probe = new NsmClient({ name: "bench-probe", nsmgrUrl, security: security("bench-probe") });
  try {
    for (const service of Object.values(services)) {
      for (;;) {
        try {
          const conn = await probe.request({ service });
          await probe.close(conn.id);
          break;
        } catch (err) {
          if (Date.now() > end)
            throw new Error(
              `${service} not served after ${cfg.readyTimeoutMs} ms: ${err instanceof Error ? err.message : String(err)}`,
            );
          await sleep(200);
        }
      }
    }
  } finally {
    await probe.closeAll();
  }
}

// ---- topologies ----

function launchText(fromDist: number): string {
  return fromDist === 1
    ? "components run from dist/ (transpiled JS)"
    : fromDist === 0
      ? "components run through tsx (dist/ missing or older than src/: `npm run build` for the transpiled path)"
      : "WARNING: some components ran from dist/, others through tsx (src/ changed during start-up)";
}

/**
 * Starts registry, nsmgr-1/2, a noop forwarder and an NSE per node with `security`, and waits until a local
 * and a remote request succeed. `launch` pins how the components start (see MeshOptions.launch).
 */
async function startTopology(
  security: MeshSecurity,
  launch?: MeshOptions["launch"],
  extra: { label?: string; telemetry?: MeshTelemetry } = {},
): Promise<Topology> {
  const t0 = performance.now();
  const mesh = new BenchMesh(
    cfg.readyTimeoutMs,
    cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${resolve(cpuProfDir)}`] : [],
    { security, ...(launch ? { launch } : {}), ...(extra.telemetry ? { telemetry: extra.telemetry } : {}) },
  );
  meshes.push(mesh);
  const what =
    (security === "mtls"
      ? `secure (mTLS + tokens, spiffe://${benchTrustDomain})`
      : "insecure (NSM_INSECURE=true)") + (extra.label !== undefined ? `, ${extra.label},` : "");
  console.error(`bench: starting the ${what} topology in ${mesh.dir}`);
  const registry = await mesh.registry();
  const [n1, n2] = await Promise.all([mesh.nsmgr("nsmgr-1"), mesh.nsmgr("nsmgr-2")]);
  const comps = await Promise.all([
    mesh.forwarder("fwd-1", n1.url),
    mesh.forwarder("fwd-2", n2.url),
    mesh.nse("nse-local", n1.url, services.local, "100.64.0.0/16"),
    mesh.nse("nse-remote", n2.url, services.remote, "100.65.0.0/16"),
  ]);
  const procs = [registry, n1.proc, n2.proc, ...comps];
  const fromDist = procs.filter((p) => p.fromDist).length / procs.length;
  console.error(`bench: ${launchText(fromDist)}`);
  const clientSecurity = await mesh.clientSecurity();
  await untilServing(n1.url, clientSecurity);
  console.error(
    `bench: ${security}${extra.label !== undefined ? ` ${extra.label}` : ""} topology up in ` +
      `${fmt((performance.now() - t0) / 1000)} s`,
  );
  return {
    security,
    mesh,
    n1,
    procs,
    fromDist,
    clientSecurity,
    ...(extra.label !== undefined ? { label: extra.label } : {}),
  };
}

// ---- the cost of telemetry (issue 16) ----

type Variant = "off" | "tracing" | "metrics";

/** JSON key prefix and label of each variant. */
const variants: Record<Variant, { key: string; label: string }> = {
  off: { key: "telemetry_off", label: "telemetry off" },
  tracing: { key: "tracing_on", label: "tracing on" },
  metrics: { key: "metrics_on", label: "metrics on" },
};

/** The in-process NSC's service.name in the traces of the tracing variant. */
const benchNscService = "bench-nsc";

/** Spans of one Request's trace: the NSC's root and client span, then a server and a client span per hop. */
const expectedSpans: Record<Kind, number> = { local: 7, remote: 11 };

interface VariantMesh {
  variant: Variant;
  t: Topology;
  /** The backend it exports to or is scraped by (Jaeger, Prometheus): its CPU is read apart from the mesh's. */
  backend: CpuSource[];
  /** Runs a round (or the warm-up) of this variant: for "tracing" with the in-process NSC's tracing on. */
  around: <T>(fn: () => Promise<T>) => Promise<T>;
}

interface OverheadResult {
  variant: Variant;
  kind: Kind;
  c: number;
  samples: number;
  p50: number;
  p99: number;
  closeP50: number;
  closeP99: number;
  perS: number;
  /** p50 of each measured round in round order: round r of every variant ran back to back, so they pair. */
  roundP50s: number[];
  /** CPU of the mesh's processes and this one (the clients) per setup and its Close, while they ran. */
  cpuMsPerCycle: number;
  /**
   * The same processes' CPU in the settle after the round (per setup): idle work, and the spans and scrapes
   * that trail the calls (a span batch leaves up to 1 s after its calls).
   */
  afterCpuMsPerCycle: number;
  /** CPU of the variant's backend (Jaeger, Prometheus) per setup and its Close, over the round and settle. */
  backendCpuMsPerCycle: number;
  /** Competing load per setup and Close: other processes, the idle meshes of the other variants included. */
  otherCpuMsPerCycle: number;
  setupFailed: number;
  setupCalls: number;
  closeFailed: number;
  closeCalls: number;
}

/**
 * One point (path, in flight) of every variant: a warm-up each, then `rounds` interleaved rounds, the
 * order rotating (off, tracing, metrics; tracing, metrics, off; …). A round is `setupsPerRound` setups, their
 * Closes, and the settle; its CPU is read over all three. A disturbed round is run again at once.
 */
async function overheadPoint(kind: Kind, c: number, vms: VariantMesh[]): Promise<OverheadResult[]> {
  const o = cfg.telemetry;
  const service = services[kind];
  const sets = vms.map((v) => new ClientSet(`${v.variant}-${kind}-c${c}`, c, v.t.n1.url, v.t.clientSecurity));
  const acc = vms.map(() => ({
    lat: [] as number[],
    closeLat: [] as number[],
    rates: [] as number[],
    roundP50s: [] as number[],
    cpu: 0,
    afterCpu: 0,
    backendCpu: 0,
    otherCpu: 0,
    setups: 0,
    setupFailed: 0,
    setupCalls: 0,
    closeFailed: 0,
    closeCalls: 0,
  }));
  const cycle = async (
    i: number,
    n: number,
    label: string,
  ): Promise<{ setups: RoundResult; closes: RoundResult }> => {
    const set = sets[i]!;
    const a = acc[i]!;
    return vms[i]!.around(async () => {
      const setups = await set.setups(n, service);
      a.setupFailed += setups.errors;
      a.setupCalls += n;
      checkErrors(label, setups, n);
      const closes = await set.closeAll();
      a.closeFailed += closes.errors;
      a.closeCalls += setups.latenciesMs.length;
      checkErrors(`${label} close`, closes, setups.latenciesMs.length);
      return { setups, closes };
    });
  };
  try {
    for (const [i, v] of vms.entries()) {
      await cycle(i, cfg.warmupSetups(c), `${tagOf(v.t)}${kind} c=${c} warm-up`);
      await sleep(o.settleMs);
    }
    let repeats = 0;
    for (let r = 0; r < o.rounds; r++) {
      for (let j = 0; j < vms.length; j++) {
        const i = (r + j) % vms.length;
        const v = vms[i]!;
        const a = acc[i]!;
        const label = `${tagOf(v.t)}${kind} c=${c} round ${r + 1}`;
        const sources = [...v.t.procs, ...v.backend];
        const backendNames = new Set(v.backend.map((b) => b.name));
        for (;;) {
          const before = cpuSnapshot(sources);
          const { setups, closes } = await cycle(i, o.setupsPerRound, label);
          const mid = cpuSnapshot(sources);
          await sleep(o.settleMs);
          const calls = cpuDelta(before, mid);
          const settle = cpuDelta(mid, cpuSnapshot(sources));
          // Competing load is judged over the calls, as at every other point (the settle is mostly idle).
          if (disturbed(label, calls, repeats < cfg.maxRepeats)) {
            repeats++;
            continue;
          }
          for (const [k, ms] of withOthers(calls)) {
            if (k === othersKey) a.otherCpu += ms;
            else if (backendNames.has(k)) a.backendCpu += ms;
            else a.cpu += ms;
          }
          for (const [k, ms] of withOthers(settle)) {
            if (k === othersKey) continue;
            else if (backendNames.has(k)) a.backendCpu += ms;
            else a.afterCpu += ms;
          }
          const n = setups.latenciesMs.length;
          a.setups += n;
          a.lat.push(...setups.latenciesMs);
          a.closeLat.push(...closes.latenciesMs);
          a.rates.push((n * 1000) / setups.wallMs);
          a.roundP50s.push(
            percentile(
              [...setups.latenciesMs].sort((x, y) => x - y),
              0.5,
            ),
          );
          break;
        }
      }
    }
  } finally {
    for (const s of sets) await s.dispose();
  }
  const out = vms.map((v, i): OverheadResult => {
    const a = acc[i]!;
    a.lat.sort((x, y) => x - y);
    a.closeLat.sort((x, y) => x - y);
    return {
      variant: v.variant,
      kind,
      c,
      samples: a.lat.length,
      p50: percentile(a.lat, 0.5),
      p99: percentile(a.lat, 0.99),
      closeP50: percentile(a.closeLat, 0.5),
      closeP99: percentile(a.closeLat, 0.99),
      perS: median(a.rates),
      roundP50s: a.roundP50s,
      cpuMsPerCycle: a.cpu / a.setups,
      afterCpuMsPerCycle: a.afterCpu / a.setups,
      backendCpuMsPerCycle: a.backendCpu / a.setups,
      otherCpuMsPerCycle: a.otherCpu / a.setups,
      setupFailed: a.setupFailed,
      setupCalls: a.setupCalls,
      closeFailed: a.closeFailed,
      closeCalls: a.closeCalls,
    };
  });
  console.error(
    `  ${kind} c=${c}: ` +
      out.map((r) => `${variants[r.variant].label} p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms`).join("; "),
  );
  return out;
}

/** Spans per trace of the NSC's Requests Jaeger holds for a path: whole traces have expectedSpans. */
interface TraceCheck {
  traces: number;
  minSpans: number;
  maxSpans: number;
  minServices: number;
}

/** What Prometheus scraped from the metrics mesh. */
interface ScrapeCheck {
  targets: number;
  samplesMedian: number;
  samplesMax: number;
  durationMsMax: number;
  /** Requests the metrics mesh's nsmgrs counted (sum of nsm_networkservice_calls_total), as Prometheus saw it. */
  nsmgrCalls: number;
}

interface TelemetryPhase {
  results: OverheadResult[];
  measured: Variant[];
  notes: string[];
  traces: Partial<Record<Kind, TraceCheck>>;
  scrape: ScrapeCheck | undefined;
  /** nsmgr-1 RSS of each variant's mesh at the end of the phase (idle, after its load). */
  rssMb: Partial<Record<Variant, number>>;
  fromDist: number;
}

const sampleValue = (r: { value: number }[]): number => r[0]?.value ?? 0;

/** The cost of telemetry: see the file comment. `launch` pins how components start (the other meshes' way). */
async function telemetryPhase(launch: MeshOptions["launch"]): Promise<TelemetryPhase> {
  const o = cfg.telemetry;
  const notes: string[] = [];
  const started: Topology[] = [];
  let jaeger: Jaeger | undefined;
  let prom: Prometheus | undefined;
  const none = <T>(fn: () => Promise<T>): Promise<T> => fn();
  const backendOf = (comm: string): CpuSource[] =>
    childrenNamed(comm).map((pid, i) => new PidCpu(i === 0 ? comm : `${comm}-${i + 1}`, pid));
  try {
    const vms: VariantMesh[] = [];
    if (existsSync(jaegerBinary())) {
      jaeger = await startJaeger();
    } else {
      notes.push(
        `tracing on: NOT MEASURED, no Jaeger binary at ${jaegerBinary()} (scripts/build-jaeger.sh builds it)`,
      );
    }
    const off = await startTopology("mtls", launch, { label: variants.off.label, telemetry: {} });
    started.push(off);
    vms.push({ variant: "off", t: off, backend: [], around: none });
    if (jaeger) {
      // host:port, upstream's form: OTLP over gRPC.
      const endpoint = new URL(jaeger.otlpGrpcUrl).host;
      const t = await startTopology("mtls", launch, {
        label: variants.tracing.label,
        telemetry: { otlpEndpoint: endpoint },
      });
      started.push(t);
      vms.push({
        variant: "tracing",
        t,
        backend: backendOf("jaeger"),
        async around(fn) {
          // Tracing is per process: on in this one only while the tracing mesh's clients run.
          const tracing = await startTracing({ endpoint, serviceName: benchNscService });
          try {
            return await fn();
          } finally {
            await tracing.stop();
          }
        },
      });
    }
    const m = await startTopology("mtls", launch, {
      label: variants.metrics.label,
      telemetry: { metrics: true },
    });
    started.push(m);
    const targets = m.mesh.metricsTargets;
    let scraper: CpuSource[] = [];
    if (existsSync(prometheusBin)) {
      prom = await startPrometheus({ targets, scrapeIntervalMs: o.scrapeIntervalMs });
      await prom.waitFor("up", (r) => r.length === targets.length && r.every((s) => s.value === 1), 30_000);
      scraper = backendOf("prometheus");
    } else {
      notes.push(
        `metrics on: not scraped, no Prometheus at ${prometheusBin}; the components served no scrapes`,
      );
    }
    vms.push({ variant: "metrics", t: m, backend: scraper, around: none });

    const results: OverheadResult[] = [];
    for (const kind of ["local", "remote"] as const) {
      for (const c of o.concurrency) results.push(...(await overheadPoint(kind, c, vms)));
    }

    const traces: Partial<Record<Kind, TraceCheck>> = {};
    if (jaeger) {
      for (const kind of ["local", "remote"] as const) {
        const found: JaegerTrace[] = await jaeger.traces(benchNscService, {
          operation: "nsc/Request",
          tags: { "nsm.network_service": services[kind] },
          limit: o.tracesChecked,
        });
        const spans = found.map((t) => t.spans.length);
        const svcs = found.map(
          (t) => new Set(t.spans.map((s) => t.processes[s.processID]?.serviceName)).size,
        );
        traces[kind] = {
          traces: found.length,
          minSpans: Math.min(...spans),
          maxSpans: Math.max(...spans),
          minServices: Math.min(...svcs),
        };
      }
    }
    let scrape: ScrapeCheck | undefined;
    if (prom) {
      const samples = (await prom.query("scrape_samples_scraped")).map((s) => s.value).sort((a, b) => a - b);
      scrape = {
        targets: samples.length,
        samplesMedian: median(samples),
        samplesMax: Math.max(...samples),
        durationMsMax:
          sampleValue(await prom.query("max(max_over_time(scrape_duration_seconds[1h]))")) * 1000,
        nsmgrCalls: sampleValue(await prom.query('sum(nsm_networkservice_calls_total{component="nsmgr"})')),
      };
    }
    const rssMb: Partial<Record<Variant, number>> = {};
    for (const v of vms) rssMb[v.variant] = v.t.n1.proc.memoryMb().rss;
    const procs = started.flatMap((t) => t.procs);
    return {
      results,
      measured: vms.map((v) => v.variant),
      notes,
      traces,
      scrape,
      rssMb,
      fromDist: procs.filter((p) => p.fromDist).length / procs.length,
    };
  } finally {
    for (const t of started) await t.mesh.down();
    await prom?.stop();
    await jaeger?.stop();
  }
}

/** Variant ÷ off of the same point. */
interface OverheadRatio {
  r: OverheadResult;
  off: OverheadResult;
  p50: number;
  p99: number;
  closeP50: number;
  closeP99: number;
  /** CPU per setup and Close during the calls. */
  cpu: number;
  /** The same with the settle after each round: the export and scrape work that trails the calls, included. */
  cpuWithAfter: number;
  /**
   * p50 of round k ÷ off's p50 of round k (run back to back): the median pair (robust to a round that other
   * load disturbed), the least and the most favourable.
   */
  roundMedian: number;
  roundMin: number;
  roundMax: number;
}

function overheadRatios(ph: TelemetryPhase): OverheadRatio[] {
  const out: OverheadRatio[] = [];
  for (const r of ph.results) {
    if (r.variant === "off") continue;
    const off = ph.results.find((x) => x.variant === "off" && x.kind === r.kind && x.c === r.c)!;
    const paired = r.roundP50s.map((p, k) => p / off.roundP50s[k]!);
    out.push({
      r,
      off,
      p50: r.p50 / off.p50,
      p99: r.p99 / off.p99,
      closeP50: r.closeP50 / off.closeP50,
      closeP99: r.closeP99 / off.closeP99,
      cpu: r.cpuMsPerCycle / off.cpuMsPerCycle,
      cpuWithAfter: (r.cpuMsPerCycle + r.afterCpuMsPerCycle) / (off.cpuMsPerCycle + off.afterCpuMsPerCycle),
      roundMedian: median(paired),
      roundMin: Math.min(...paired),
      roundMax: Math.max(...paired),
    });
  }
  return out;
}

/** The worst (largest) of a ratio over the points of a variant, and where. */
function worstOf(
  ratios: OverheadRatio[],
  variant: Variant,
  pick: (x: OverheadRatio) => number,
  c?: number,
): OverheadRatio | undefined {
  let worst: OverheadRatio | undefined;
  for (const x of ratios) {
    if (x.r.variant !== variant || (c !== undefined && x.r.c !== c)) continue;
    if (!worst || pick(x) > pick(worst)) worst = x;
  }
  return worst;
}

function printTelemetry(ph: TelemetryPhase): void {
  const o = cfg.telemetry;
  const ratios = overheadRatios(ph);
  const ratioOf = (r: OverheadResult): OverheadRatio | undefined => ratios.find((x) => x.r === r);
  const x = (v: number | undefined): string => (v === undefined ? "—" : `${fmt(v)}×`);
  printTable(
    `Cost of telemetry (issue 16): three secure meshes up at once, the same build — telemetry off (the ` +
      `baseline: no --metrics-listen-on, no --opentelemetry-endpoint, as before the feature), tracing on ` +
      `(every component and the in-process NSC export OTLP/gRPC to a real Jaeger) and metrics on (every ` +
      `component serves /metrics${ph.scrape ? `, scraped every ${o.scrapeIntervalMs} ms by a real Prometheus` : ""}` +
      `; the in-process NSC's metrics stay off). ${o.rounds} interleaved rounds of ${o.setupsPerRound} ` +
      `setups per variant and point, order rotating; p50/p99 over all rounds' samples; ÷ off = variant ÷ ` +
      `baseline; round p50 ÷ off = the same for each pair of rounds run back to back: median (least..most); CPU = ` +
      `the mesh's processes and the clients per setup and its Close while the calls ran; after = the same ` +
      `processes in the ${fmt(o.settleMs / 1000)} s after each round (idle work, and spans exported after ` +
      `their calls), per setup; total ÷ off = (CPU + after) ÷ off's; backend = Jaeger or Prometheus over ` +
      `both; other = competing load during the calls (the other meshes' idle work included)`,
    [
      "path",
      "in flight",
      "variant",
      "setups",
      "p50 ms",
      "÷ off",
      "p99 ms",
      "÷ off",
      "round p50 ÷ off",
      "close p50 ms",
      "÷ off",
      "close p99 ms",
      "÷ off",
      "setups/s",
      "CPU ms",
      "÷ off",
      "after ms",
      "total ÷ off",
      "backend CPU ms",
      "other CPU ms",
      "failed setups",
      "failed closes",
    ],
    ph.results.map((r) => {
      const k = ratioOf(r);
      return [
        r.kind,
        String(r.c),
        variants[r.variant].label,
        String(r.samples),
        fmt(r.p50),
        x(k?.p50),
        fmt(r.p99),
        x(k?.p99),
        k ? `${fmt(k.roundMedian)} (${fmt(k.roundMin)}..${fmt(k.roundMax)})` : "—",
        fmt(r.closeP50),
        x(k?.closeP50),
        fmt(r.closeP99),
        x(k?.closeP99),
        fmt(r.perS),
        fmt(r.cpuMsPerCycle),
        x(k?.cpu),
        fmt(r.afterCpuMsPerCycle),
        x(k?.cpuWithAfter),
        r.variant === "off" ? "—" : fmt(r.backendCpuMsPerCycle),
        fmt(r.otherCpuMsPerCycle),
        `${r.setupFailed}/${r.setupCalls}`,
        `${r.closeFailed}/${r.closeCalls}`,
      ];
    }),
  );
  for (const v of ["tracing", "metrics"] as const) {
    if (!ph.measured.includes(v)) continue;
    const p50 = worstOf(ratios, v, (k) => k.p50)!;
    const p99 = worstOf(ratios, v, (k) => k.p99)!;
    const cpu = worstOf(ratios, v, (k) => k.cpu)!;
    const total = worstOf(ratios, v, (k) => k.cpuWithAfter)!;
    console.log(
      `${variants[v].label} ÷ off, the worst point of each: setup p50 ${x(p50.p50)} (${p50.r.kind} c=${p50.r.c}: ` +
        `${fmt(p50.r.p50)} vs ${fmt(p50.off.p50)} ms), p99 ${x(p99.p99)} (${p99.r.kind} c=${p99.r.c}), CPU per ` +
        `setup + Close ${x(cpu.cpu)} (${cpu.r.kind} c=${cpu.r.c}: ${fmt(cpu.r.cpuMsPerCycle)} vs ` +
        `${fmt(cpu.off.cpuMsPerCycle)} ms), with the settle after the rounds ${x(total.cpuWithAfter)} ` +
        `(${total.r.kind} c=${total.r.c}).`,
    );
  }
  console.log(
    "Tracing off is the baseline: with no endpoint the span code's only work per call is one check that " +
      "tracing is undefined (and a context lookup for the reply's attributes); with no --metrics-listen-on the " +
      "metrics element's is one check that metrics are undefined, and prom-client is never loaded.",
  );
  for (const kind of ["local", "remote"] as const) {
    const t = ph.traces[kind];
    if (t)
      console.log(
        `Jaeger, ${t.traces} of the NSC's ${kind} Request traces read back: ${t.minSpans}..${t.maxSpans} spans ` +
          `(a whole one has ${expectedSpans[kind]}), at least ${t.minServices} services each.`,
      );
  }
  if (ph.scrape)
    console.log(
      `Prometheus: ${ph.scrape.targets} targets, samples per scrape median ${fmt(ph.scrape.samplesMedian)} ` +
        `(max ${fmt(ph.scrape.samplesMax)}), slowest scrape ${fmt(ph.scrape.durationMsMax)} ms; the nsmgrs ` +
        `counted ${fmt(ph.scrape.nsmgrCalls)} Requests and Closes.`,
    );
  console.log(
    `nsmgr-1 RSS at the end (idle after its load): ` +
      ph.measured.map((v) => `${variants[v].label} ${fmt(ph.rssMb[v]!)} MB`).join(", "),
  );
  for (const n of ph.notes) console.log(`NOTE: ${n}`);
}

function putTelemetry(ph: TelemetryPhase): void {
  const o = cfg.telemetry;
  for (const r of ph.results) {
    const k = `${variants[r.variant].key}_${r.kind}`;
    put(`${k}_setup_p50_ms_c${r.c}`, r.p50);
    put(`${k}_setup_p99_ms_c${r.c}`, r.p99);
    put(`${k}_close_p50_ms_c${r.c}`, r.closeP50);
    put(`${k}_close_p99_ms_c${r.c}`, r.closeP99);
    put(`${k}_setups_per_s_c${r.c}`, r.perS);
    put(`${k}_cpu_ms_per_setup_close_c${r.c}`, r.cpuMsPerCycle);
    put(`${k}_after_cpu_ms_per_setup_close_c${r.c}`, r.afterCpuMsPerCycle);
    if (r.variant !== "off") put(`${k}_backend_cpu_ms_per_setup_close_c${r.c}`, r.backendCpuMsPerCycle);
    put(`${k}_other_cpu_ms_per_setup_close_c${r.c}`, r.otherCpuMsPerCycle);
    put(`${k}_setup_samples_c${r.c}`, r.samples);
    put(`${k}_setup_failed_c${r.c}`, r.setupFailed);
    put(`${k}_close_failed_c${r.c}`, r.closeFailed);
  }
  const ratios = overheadRatios(ph);
  for (const k of ratios) {
    const key = `${variants[k.r.variant].key}_over_off`;
    const at = `c${k.r.c}_${k.r.kind}`;
    put(`${key}_setup_p50_ratio_${at}`, k.p50);
    put(`${key}_setup_p99_ratio_${at}`, k.p99);
    put(`${key}_close_p50_ratio_${at}`, k.closeP50);
    put(`${key}_close_p99_ratio_${at}`, k.closeP99);
    put(`${key}_cpu_per_setup_close_ratio_${at}`, k.cpu);
    put(`${key}_cpu_with_after_ratio_${at}`, k.cpuWithAfter);
    put(`${key}_round_setup_p50_ratio_median_${at}`, k.roundMedian);
    put(`${key}_round_setup_p50_ratio_min_${at}`, k.roundMin);
    put(`${key}_round_setup_p50_ratio_max_${at}`, k.roundMax);
  }
  for (const v of ["tracing", "metrics"] as const) {
    if (!ph.measured.includes(v)) continue;
    const key = `${variants[v].key}_over_off`;
    put(`${key}_setup_p50_ratio_c10`, worstOf(ratios, v, (k) => k.p50, 10)!.p50);
    put(`${key}_setup_p50_ratio_worst`, worstOf(ratios, v, (k) => k.p50)!.p50);
    put(`${key}_setup_p99_ratio_worst`, worstOf(ratios, v, (k) => k.p99)!.p99);
    put(`${key}_cpu_per_setup_close_ratio_worst`, worstOf(ratios, v, (k) => k.cpu)!.cpu);
    put(`${key}_cpu_with_after_ratio_worst`, worstOf(ratios, v, (k) => k.cpuWithAfter)!.cpuWithAfter);
  }
  for (const kind of ["local", "remote"] as const) {
    const t = ph.traces[kind];
    if (!t) continue;
    put(`tracing_on_trace_spans_min_${kind}`, t.minSpans);
    put(`tracing_on_trace_spans_expected_${kind}`, expectedSpans[kind]);
    put(`tracing_on_traces_checked_${kind}`, t.traces);
  }
  if (ph.scrape) {
    put("metrics_on_scrape_targets", ph.scrape.targets);
    put("metrics_on_scrape_samples_median", ph.scrape.samplesMedian);
    put("metrics_on_scrape_samples_max", ph.scrape.samplesMax);
    put("metrics_on_scrape_duration_ms_max", ph.scrape.durationMsMax);
  }
  for (const v of ph.measured) put(`${variants[v].key}_nsmgr_rss_mb_idle_end`, ph.rssMb[v]!);
  put("telemetry_tracing_measured", ph.measured.includes("tracing") ? 1 : 0);
  put("telemetry_metrics_scrape_interval_ms", ph.scrape ? o.scrapeIntervalMs : 0);
  put("telemetry_rounds", o.rounds);
  put("telemetry_setups_per_round", o.setupsPerRound);
  put("telemetry_components_from_dist", ph.fromDist);
}

// ---- main ----

async function main(): Promise<void> {
  const t0 = performance.now();
  if (cpuProfDir) mkdirSync(resolve(cpuProfDir), { recursive: true });
  if (process.env.NSM_FROM_SOURCE !== "1" && !(launcherUsesDist() && relayBuildIsFresh())) {
    // Components and floor relays both run from one build; make it when src/ or the relays changed.
    console.error("bench: dist/ is older than the sources: node scripts/build.mjs");
    execFileSync(process.execPath, [join(benchDir, "..", "scripts", "build.mjs")], { stdio: "inherit" });
  }
  if (telemetryOnly) {
    const tele = await telemetryPhase(launcherUsesDist() ? "dist" : "source");
    const cpuInfo = cpus();
    console.log(
      `NSM control plane, cost of telemetry only — ${cpuInfo.length} CPUs (${cpuInfo[0]?.model ?? "?"}), ` +
        `node ${process.version}, ${new Date().toISOString()}${quick ? " — QUICK RUN" : ""}`,
    );
    console.log(launchText(tele.fromDist));
    printTelemetry(tele);
    console.log(`
--telemetry-only: ${resultsFile} not written`);
    return;
  }
  // Every headline figure is the secure mesh's: components are secure by default.
  const secure = await startTopology("mtls");
  const { n1, procs, fromDist } = secure;
  const mode = launchText(fromDist);

  // Memory first, on the freshly started nsmgr (idle: it has served one local and one remote probe
  // connection, now closed), and once more after every load phase, when its heap has grown under load.
  console.error("bench: nsmgr-1 memory, fresh");
  const mem = await memoryPhase("fresh", secure);

  console.error("bench: transport baseline (Close of an unknown id to nsmgr-1, mTLS + token)");
  const transport = new Map<number, TransportResult>();
  for (const c of cfg.concurrency) transport.set(c, await transportPoint(c, secure));

  console.error("bench: connection setup");
  const points: PointResult[] = [];
  for (const kind of ["local", "remote"] as const) {
    for (const c of cfg.concurrency) points.push(await setupPoint(kind, c, secure));
  }
  console.error("bench: nsmgr-1 memory, after the load phases");
  const memAfter = await memoryPhase("after load", secure);
  const peakMb = n1.proc.memoryMb().peak;
  const otherRss = new Map(procs.map((p) => [p.name, p.memoryMb().rss]));

  console.error("bench: transport floors (plaintext relays with no NSM logic on the same hops)");
  const probe = new NsmClient({
    name: "bench-floor-probe",
    nsmgrUrl: n1.url,
    security: secure.clientSecurity("bench-floor-probe"),
  });
  const sample = await probe.request({ service: services.local });
  await probe.closeAll();
  const { floors, requestBytes: floorRequestBytes, relays } = await floorPhase(secure, sample);
  const relaysFromDist = relays.filter((p) => p.fromDist).length / relays.length;
  const relayMode =
    relaysFromDist === 1
      ? "transport-floor relays run from dist/bench/ (the same build)"
      : relaysFromDist === 0
        ? "transport-floor relays run through tsx"
        : "WARNING: some relays ran from dist/, others through tsx";
  // A floor run another way than the components (tsx against transpiled JS) is not a floor for them.
  const sameBuild = relaysFromDist === fromDist && (fromDist === 0 || fromDist === 1);

  // The cost of security: the same topology insecure, started the way the secure one was (an edit of src/
  // meanwhile must not move it to tsx), measured by the same method at the points the ratios need.
  console.error("bench: cost of security: the secure mesh stops, the same topology starts insecure");
  await secure.mesh.down();
  const insecure = await startTopology(
    "insecure",
    fromDist === 1 ? "dist" : fromDist === 0 ? "source" : undefined,
  );
  console.error("bench: insecure transport baseline (Close of an unknown id to nsmgr-1, plaintext)");
  const insecureTransport = new Map<number, TransportResult>();
  for (const c of cfg.securityConcurrency) insecureTransport.set(c, await transportPoint(c, insecure));
  console.error("bench: insecure connection setup");
  const insecurePoints: PointResult[] = [];
  for (const kind of ["local", "remote"] as const) {
    for (const c of cfg.securityConcurrency) insecurePoints.push(await setupPoint(kind, c, insecure));
  }
  await insecure.mesh.down();
  const sameLaunch = insecure.fromDist === fromDist;

  // The cost of telemetry, last, so that no figure above ran beside its meshes and backends.
  console.error(
    "bench: cost of telemetry: three secure meshes (telemetry off, tracing on, metrics on), interleaved rounds",
  );
  const tele = await telemetryPhase(fromDist === 1 ? "dist" : fromDist === 0 ? "source" : undefined);
  const sameTelemetryLaunch = tele.fromDist === fromDist;

  // ---- table ----
  const cpuInfo = cpus();
  console.log(
    `NSM control plane, forwarder noop, mTLS + tokens (spiffe://${benchTrustDomain}) — ${cpuInfo.length} CPUs ` +
      `(${cpuInfo[0]?.model ?? "?"}), node ${process.version}, ${new Date().toISOString()}` +
      `${quick ? " — QUICK RUN" : ""}`,
  );
  console.log(`${mode}; ${relayMode}`);
  if (!sameBuild)
    console.log("WARNING: components and transport-floor relays did not run from the same build");
  if (!sameLaunch)
    console.log(
      `WARNING: the insecure mesh ran another way than the secure one (${launchText(insecure.fromDist)})`,
    );
  console.log(
    `Secure mesh: every process has an X.509-SVID of spiffe://${benchTrustDomain}; mTLS on every link (unix ` +
      `sockets too), ES256 tokens with the TLS peer as audience, policies at every hop; the clients share ` +
      `one SVID. All figures but "Cost of security"'s insecure columns are this mesh's.`,
  );
  console.log(
    `${cfg.rounds} rounds per point; setups/s = median of rounds; p50/p99 over all rounds' samples. ` +
      `transport = unary Close of an unknown id to nsmgr-1 (gRPC round trip, no connection work; mTLS + token).`,
  );
  printTable(
    "Connection setup (Request → response at the client)",
    [
      "path",
      "in flight",
      "setups",
      "p50 ms",
      "p99 ms",
      "setups/s",
      "(min..max)",
      "transport p50 ms",
      "p99 ms",
      "calls/s",
      "setup÷transport p50",
      "close p50 ms",
      "close p99 ms",
      "failed setups",
      "failed closes",
    ],
    points.map((p) => {
      const t = transport.get(p.c)!;
      return [
        p.kind,
        String(p.c),
        String(p.samples),
        fmt(p.p50),
        fmt(p.p99),
        fmt(p.perS),
        `${fmt(p.perSMin)}..${fmt(p.perSMax)}`,
        fmt(t.p50),
        fmt(t.p99),
        fmt(t.perS),
        `${fmt(p.p50 / t.p50)}×`,
        fmt(p.closeP50),
        fmt(p.closeP99),
        `${p.setupFailed}/${p.setupCalls}`,
        `${p.closeFailed}/${p.closeCalls}`,
      ];
    }),
  );

  const names = [...(points[0]?.cpuMsPerSetup.keys() ?? [])].filter((n) => n !== othersKey);
  printTable(
    `CPU per setup, ms (user+system over the measured rounds; ${othersKey} = machine busy time not ` +
      `used by these processes, i.e. competing load)`,
    ["path", "in flight", ...names, "total", othersKey],
    [...points, ...insecurePoints].map((p) => {
      const vals = names.map((n) => p.cpuMsPerSetup.get(n) ?? 0);
      return [
        insecurePoints.includes(p) ? `${p.kind} (insecure)` : p.kind,
        String(p.c),
        ...vals.map(fmt),
        fmt(vals.reduce((a, b) => a + b, 0)),
        fmt(p.cpuMsPerSetup.get(othersKey) ?? 0),
      ];
    }),
  );
  const contaminated = [...points, ...insecurePoints].filter((p) => {
    const others = p.cpuMsPerSetup.get(othersKey) ?? 0;
    let ours = 0;
    for (const [k, v] of p.cpuMsPerSetup) if (k !== othersKey) ours += v;
    return others > 0.1 * ours;
  });
  if (contaminated.length > 0)
    console.log(
      `WARNING: other processes used more than 10% as much CPU as the mesh during ` +
        `${contaminated.map((p) => `${insecurePoints.includes(p) ? "insecure " : ""}${p.kind} c=${p.c}`).join(", ")}: those figures are disturbed even after repeating rounds; rerun on an idle machine.`,
    );

  printTable(
    "Transport floors: the same hops (3 local, 5 remote; same socket kinds, one process each) as relays " +
      `with no NSM logic, carrying a real setup's request (${floorRequestBytes} bytes) and token. grpc-js = ` +
      "decode, call the next hop, answer (the library the components use); http2 = the same protobuf work " +
      "on bare node:http2. The relays are PLAINTEXT (no TLS, no token checks): setup ÷ floor of the secure " +
      "mesh includes the cost of security",
    [
      "path",
      "in flight",
      "grpc-js p50 ms",
      "calls/s",
      "CPU ms/call",
      "http2 p50 ms",
      "calls/s",
      "CPU ms/call",
      "NSM setup p50 ms",
      "setup÷grpc-js floor",
      "failed grpc-js/http2",
    ],
    floors
      .filter((f) => f.flavour === "grpc-js")
      .map((g) => {
        const h = floors.find((x) => x.flavour === "http2" && x.kind === g.kind && x.c === g.c)!;
        const p = points.find((x) => x.kind === g.kind && x.c === g.c)!;
        return [
          g.kind,
          String(g.c),
          fmt(g.p50),
          fmt(g.perS),
          fmt(g.cpuMsPerCall),
          fmt(h.p50),
          fmt(h.perS),
          fmt(h.cpuMsPerCall),
          fmt(p.p50),
          `${fmt(p.p50 / g.p50)}×`,
          `${g.failed}/${h.failed}`,
        ];
      }),
  );

  // ---- cost of security ----
  const pointOf = (set: PointResult[], kind: Kind, c: number): PointResult => {
    const p = set.find((x) => x.kind === kind && x.c === c);
    if (!p) throw new Error(`no ${kind} point at ${c} in flight`);
    return p;
  };
  const costs = insecurePoints.map((ins) => {
    const sec = pointOf(points, ins.kind, ins.c);
    return {
      kind: ins.kind,
      c: ins.c,
      ins,
      sec,
      p50Ratio: sec.p50 / ins.p50,
      p99Ratio: sec.p99 / ins.p99,
      perSRatio: sec.perS / ins.perS,
      cpuRatio: cpuTotal(sec) / cpuTotal(ins),
    };
  });
  const costOf = (kind: Kind, c: number): (typeof costs)[number] => {
    const k = costs.find((x) => x.kind === kind && x.c === c);
    if (!k) throw new Error(`no cost of security for ${kind} at ${c} in flight`);
    return k;
  };
  const mtlsLocal10 = costOf("local", 10).p50Ratio;
  const mtlsRemote10 = costOf("remote", 10).p50Ratio;
  // The plain key is the worse (larger) of the two paths: the goal holds only if it holds on both.
  const mtlsWorse10 = Math.max(mtlsLocal10, mtlsRemote10);
  printTable(
    "Cost of security: the same topology secure (mTLS on every link, ES256 tokens, policies at every hop) " +
      "and insecure (NSM_INSECURE=true: plaintext, no checks), same build, same method, one after the other; " +
      "ratio = mTLS ÷ insecure; CPU = every process's (mesh + clients) per setup",
    [
      "path",
      "in flight",
      "insecure p50 ms",
      "mTLS p50 ms",
      "p50 ratio",
      "insecure p99 ms",
      "mTLS p99 ms",
      "p99 ratio",
      "insecure setups/s",
      "mTLS setups/s",
      "setups/s ratio",
      "insecure CPU ms",
      "mTLS CPU ms",
      "CPU ratio",
      "failed setups (insecure; mTLS)",
      "failed closes (insecure; mTLS)",
    ],
    costs.map((k) => [
      k.kind,
      String(k.c),
      fmt(k.ins.p50),
      fmt(k.sec.p50),
      `${fmt(k.p50Ratio)}×`,
      fmt(k.ins.p99),
      fmt(k.sec.p99),
      `${fmt(k.p99Ratio)}×`,
      fmt(k.ins.perS),
      fmt(k.sec.perS),
      `${fmt(k.perSRatio)}×`,
      fmt(cpuTotal(k.ins)),
      fmt(cpuTotal(k.sec)),
      `${fmt(k.cpuRatio)}×`,
      `${k.ins.setupFailed}/${k.ins.setupCalls}; ${k.sec.setupFailed}/${k.sec.setupCalls}`,
      `${k.ins.closeFailed}/${k.ins.closeCalls}; ${k.sec.closeFailed}/${k.sec.closeCalls}`,
    ]),
  );
  printTable(
    "Transport baseline, insecure and secure: unary Close of an unknown id to nsmgr-1, plaintext without a " +
      "token vs mTLS with one",
    [
      "in flight",
      "insecure p50 ms",
      "mTLS p50 ms",
      "p50 ratio",
      "insecure calls/s",
      "mTLS calls/s",
      "failed (insecure; mTLS)",
    ],
    [...insecureTransport.values()].map((ins) => {
      const sec = transport.get(ins.c)!;
      return [
        String(ins.c),
        fmt(ins.p50),
        fmt(sec.p50),
        `${fmt(sec.p50 / ins.p50)}×`,
        fmt(ins.perS),
        fmt(sec.perS),
        `${ins.failed}; ${sec.failed}`,
      ];
    }),
  );
  console.log(
    `mtls_over_insecure_setup_ratio_c10 = the worse of local ${fmt(mtlsLocal10)}× and remote ` +
      `${fmt(mtlsRemote10)}×: ${fmt(mtlsWorse10)}× (goal ≤ ${cfg.mtlsOverInsecureMax}×). The transport floors ` +
      `above are plaintext grpc-js / node:http2 relays, not TLS ones.`,
  );

  printTelemetry(tele);
  if (!sameTelemetryLaunch)
    console.log(
      `WARNING: the meshes of the cost of telemetry ran another way than the secure one (${launchText(tele.fromDist)})`,
    );

  printTable(
    "nsmgr-1 memory (VmRSS)",
    ["state", "MB"],
    [
      ["idle (fresh: topology up, one local + one remote probe served)", fmt(mem.beforeMb)],
      [`${mem.live} live local connections (fresh nsmgr)`, fmt(mem.liveMb)],
      ["after closing them", fmt(mem.afterCloseMb)],
      ["idle after transport and setup phases", fmt(memAfter.beforeMb)],
      [`${memAfter.live} live local connections (after the load phases)`, fmt(memAfter.liveMb)],
      ["after closing them", fmt(memAfter.afterCloseMb)],
      ["peak over the run (VmHWM)", fmt(peakMb)],
      [
        `headline: ${memAfter.live} live connections, worse of fresh and after load (nsmgr_rss_mb_1000_conns)`,
        fmt(Math.max(mem.liveMb, memAfter.liveMb)),
      ],
    ],
  );

  const local10 = points.find((p) => p.kind === "local" && p.c === 10)!;
  const remote10 = points.find((p) => p.kind === "remote" && p.c === 10)!;
  const local100 = points.find((p) => p.kind === "local" && p.c === 100)!;
  const remote100 = points.find((p) => p.kind === "remote" && p.c === 100)!;
  const grpcFloor = (kind: Kind, c: number): FloorResult =>
    floors.find((f) => f.flavour === "grpc-js" && f.kind === kind && f.c === c)!;
  // Headline memory: the worse of the two measurements (after the load phases the heap has grown).
  const rssHeadline = Math.max(mem.liveMb, memAfter.liveMb);
  const ratios = {
    localOverFloor: local10.p50 / grpcFloor("local", 10).p50,
    remoteOverFloor: remote10.p50 / grpcFloor("remote", 10).p50,
    localPerSOverUpstream: local100.perS / upstreamGo.localSetupsPerSC100,
    remotePerSOverUpstream: remote100.perS / upstreamGo.remoteSetupsPerSC100,
    localCpuUpstreamOverOurs: upstreamGo.localCpuMsPerSetupC10 / cpuTotal(local10),
    remoteCpuUpstreamOverOurs: upstreamGo.remoteCpuMsPerSetupC10 / cpuTotal(remote10),
  };
  const tg = cfg.targets;
  const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
  printTable(
    "Targets",
    ["target", "measured", "status"],
    [
      [
        `local setup p50 (10 in flight) ≤ ${tg.localP50Ms} ms`,
        fmt(local10.p50),
        verdict(local10.p50 <= tg.localP50Ms),
      ],
      [
        `remote setup p50 (10 in flight) ≤ ${tg.remoteP50Ms} ms`,
        fmt(remote10.p50),
        verdict(remote10.p50 <= tg.remoteP50Ms),
      ],
      [
        `local setups/s (100 in flight) ≥ ${tg.setupsPerS}`,
        fmt(local100.perS),
        verdict(local100.perS >= tg.setupsPerS),
      ],
      [
        `nsmgr RSS at ${memAfter.live} connections ≤ ${tg.rssMb} MB (worse of fresh / after the load phases)`,
        `${fmt(rssHeadline)} (fresh ${fmt(mem.liveMb)}, after load ${fmt(memAfter.liveMb)})`,
        verdict(rssHeadline <= tg.rssMb),
      ],
      [
        `local setup p50 ÷ grpc-js floor p50 (10 in flight) ≤ ${cfg.overFloorMax}`,
        `${fmt(ratios.localOverFloor)} (${fmt(local10.p50)} / ${fmt(grpcFloor("local", 10).p50)} ms)`,
        verdict(ratios.localOverFloor <= cfg.overFloorMax),
      ],
      [
        `remote setup p50 ÷ grpc-js floor p50 (10 in flight) ≤ ${cfg.overFloorMax}`,
        `${fmt(ratios.remoteOverFloor)} (${fmt(remote10.p50)} / ${fmt(grpcFloor("remote", 10).p50)} ms)`,
        verdict(ratios.remoteOverFloor <= cfg.overFloorMax),
      ],
      ...(["local", "remote"] as const).map((kind) => {
        const k = costOf(kind, 10);
        return [
          `${kind} setup p50 mTLS + tokens ÷ insecure (10 in flight) ≤ ${cfg.mtlsOverInsecureMax}`,
          `${fmt(k.p50Ratio)} (${fmt(k.sec.p50)} / ${fmt(k.ins.p50)} ms)`,
          verdict(k.p50Ratio <= cfg.mtlsOverInsecureMax),
        ];
      }),
      [
        `local setups/s (100 in flight) ÷ upstream Go's ≥ ${cfg.overUpstreamMin}`,
        `${fmt(ratios.localPerSOverUpstream)} (${fmt(local100.perS)} / ${upstreamGo.localSetupsPerSC100})`,
        verdict(ratios.localPerSOverUpstream >= cfg.overUpstreamMin),
      ],
      [
        `remote setups/s (100 in flight) ÷ upstream Go's ≥ ${cfg.overUpstreamMin}`,
        `${fmt(ratios.remotePerSOverUpstream)} (${fmt(remote100.perS)} / ${upstreamGo.remoteSetupsPerSC100})`,
        verdict(ratios.remotePerSOverUpstream >= cfg.overUpstreamMin),
      ],
      [
        `upstream Go's CPU per local setup ÷ ours (10 in flight) ≥ ${cfg.overUpstreamMin}`,
        `${fmt(ratios.localCpuUpstreamOverOurs)} (${upstreamGo.localCpuMsPerSetupC10} / ${fmt(cpuTotal(local10))} ms)`,
        verdict(ratios.localCpuUpstreamOverOurs >= cfg.overUpstreamMin),
      ],
      [
        `upstream Go's CPU per remote setup ÷ ours (10 in flight) ≥ ${cfg.overUpstreamMin}`,
        `${fmt(ratios.remoteCpuUpstreamOverOurs)} (${upstreamGo.remoteCpuMsPerSetupC10} / ${fmt(cpuTotal(remote10))} ms)`,
        verdict(ratios.remoteCpuUpstreamOverOurs >= cfg.overUpstreamMin),
      ],
    ],
  );
  console.log(
    `upstream Go figures are quoted, not measured in this run: ${upstreamGo.source} ` +
      `(upstream_go_* in the JSON).`,
  );

  // ---- JSON ----
  put("local_setup_p50_ms_c10", local10.p50);
  put("remote_setup_p50_ms_c10", remote10.p50);
  put("setups_per_s_c100", local100.perS);
  put("nsmgr_rss_mb_1000_conns", rssHeadline);
  put("nsmgr_rss_mb_1000_conns_fresh", mem.liveMb);
  put("local_setup_over_floor_c10", ratios.localOverFloor);
  put("remote_setup_over_floor_c10", ratios.remoteOverFloor);
  put("local_setups_per_s_c100_over_upstream", ratios.localPerSOverUpstream);
  put("remote_setups_per_s_c100_over_upstream", ratios.remotePerSOverUpstream);
  put("local_cpu_per_setup_c10_upstream_over_ours", ratios.localCpuUpstreamOverOurs);
  put("remote_cpu_per_setup_c10_upstream_over_ours", ratios.remoteCpuUpstreamOverOurs);
  // Quoted from upstream's measurements (see upstreamGo.source), not measured here.
  put("upstream_go_local_setups_per_s_c100", upstreamGo.localSetupsPerSC100);
  put("upstream_go_remote_setups_per_s_c100", upstreamGo.remoteSetupsPerSC100);
  put("upstream_go_local_cpu_ms_per_setup_c10", upstreamGo.localCpuMsPerSetupC10);
  put("upstream_go_remote_cpu_ms_per_setup_c10", upstreamGo.remoteCpuMsPerSetupC10);
  put("target_setup_over_floor_c10_max", cfg.overFloorMax);
  put("target_over_upstream_min", cfg.overUpstreamMin);
  // Keys without a prefix are the secure mesh's (mTLS + tokens), the insecure mesh's start with insecure_.
  put("mesh_mtls", 1);
  const putPoint = (prefix: string, p: PointResult, tr: Map<number, TransportResult>): void => {
    const k = `${prefix}${p.kind}`;
    const t = tr.get(p.c)!;
    put(`${k}_setup_p50_ms_c${p.c}`, p.p50);
    put(`${k}_setup_p99_ms_c${p.c}`, p.p99);
    put(`${k}_setups_per_s_c${p.c}`, p.perS);
    put(`${k}_setups_per_s_min_round_c${p.c}`, p.perSMin);
    put(`${k}_setups_per_s_max_round_c${p.c}`, p.perSMax);
    put(`${k}_setup_over_transport_p50_c${p.c}`, p.p50 / t.p50);
    put(`${k}_close_p50_ms_c${p.c}`, p.closeP50);
    put(`${k}_close_p99_ms_c${p.c}`, p.closeP99);
    put(`${k}_closes_per_s_c${p.c}`, p.closesPerS);
    put(`${k}_setup_samples_c${p.c}`, p.samples);
    put(`${k}_setup_failed_c${p.c}`, p.setupFailed);
    put(`${k}_close_failed_c${p.c}`, p.closeFailed);
    let total = 0;
    for (const [name, v] of p.cpuMsPerSetup) {
      if (name === othersKey) {
        put(`${k}_cpu_ms_per_setup_c${p.c}_other_load`, v);
        continue;
      }
      total += v;
      // Per process at 100 in flight, and at 10 (where secure and insecure are compared).
      if (p.c === 100 || p.c === 10)
        put(`${k}_cpu_ms_per_setup_c${p.c}_${name.replace(/[^a-z0-9]+/gi, "_").replace(/_$/, "")}`, v);
    }
    put(`${k}_cpu_ms_per_setup_c${p.c}_all_processes`, total);
  };
  const putTransport = (prefix: string, t: TransportResult): void => {
    put(`${prefix}transport_p50_ms_c${t.c}`, t.p50);
    put(`${prefix}transport_p99_ms_c${t.c}`, t.p99);
    put(`${prefix}transport_calls_per_s_c${t.c}`, t.perS);
    put(`${prefix}transport_failed_c${t.c}`, t.failed);
  };
  for (const p of points) putPoint("", p, transport);
  for (const t of transport.values()) putTransport("", t);
  for (const p of insecurePoints) putPoint("insecure_", p, insecureTransport);
  for (const t of insecureTransport.values()) putTransport("insecure_", t);
  for (const k of costs) {
    put(`mtls_over_insecure_setup_ratio_c${k.c}_${k.kind}`, k.p50Ratio);
    put(`mtls_over_insecure_setup_p99_ratio_c${k.c}_${k.kind}`, k.p99Ratio);
    put(`mtls_over_insecure_setups_per_s_ratio_c${k.c}_${k.kind}`, k.perSRatio);
    put(`mtls_over_insecure_cpu_per_setup_ratio_c${k.c}_${k.kind}`, k.cpuRatio);
  }
  put("mtls_over_insecure_setup_ratio_c10", mtlsWorse10);
  for (const ins of insecureTransport.values())
    put(`mtls_over_insecure_transport_p50_ratio_c${ins.c}`, transport.get(ins.c)!.p50 / ins.p50);
  put("target_mtls_over_insecure_setup_ratio_c10_max", cfg.mtlsOverInsecureMax);
  putTelemetry(tele);
  for (const f of floors) {
    const p = points.find((x) => x.kind === f.kind && x.c === f.c)!;
    const key = `${f.flavour === "grpc-js" ? "grpcjs" : "http2"}_floor_${f.kind}`;
    put(`${key}_p50_ms_c${f.c}`, f.p50);
    put(`${key}_p99_ms_c${f.c}`, f.p99);
    put(`${key}_calls_per_s_c${f.c}`, f.perS);
    put(`${key}_cpu_ms_per_call_c${f.c}`, f.cpuMsPerCall);
    put(`${key}_failed_c${f.c}`, f.failed);
    if (f.flavour === "grpc-js") put(`${f.kind}_setup_over_grpcjs_floor_p50_c${f.c}`, p.p50 / f.p50);
  }
  put("floor_request_bytes", floorRequestBytes);
  put("nsmgr_rss_mb_idle", mem.beforeMb);
  put("nsmgr_rss_mb_after_close_1000_conns", mem.afterCloseMb);
  put("nsmgr_rss_mb_idle_after_load", memAfter.beforeMb);
  put("nsmgr_rss_mb_1000_conns_after_load", memAfter.liveMb);
  put("nsmgr_rss_mb_after_close_1000_conns_after_load", memAfter.afterCloseMb);
  put("nsmgr_rss_mb_peak", peakMb);
  put("open_1000_conns_s", mem.openS);
  for (const [name, mb] of otherRss) put(`rss_mb_end_${name.replace(/[^a-z0-9]+/gi, "_")}`, mb);
  put("target_local_setup_p50_ms", tg.localP50Ms);
  put("target_remote_setup_p50_ms", tg.remoteP50Ms);
  put("target_setups_per_s", tg.setupsPerS);
  put("target_nsmgr_rss_mb", tg.rssMb);
  put("components_from_dist", fromDist);
  put("insecure_components_from_dist", insecure.fromDist);
  put("relays_from_dist", relaysFromDist);
  put("rounds_repeated_for_competing_load", discardedRounds);
  put("cpus", cpuInfo.length);
  put("run_duration_s", (performance.now() - t0) / 1000);

  if (!sameBuild)
    // Figures whose floor ran another way than the components are not written as results.
    throw new Error(
      `components_from_dist ${fromDist} but relays_from_dist ${relaysFromDist}: rerun (npm run build first)`,
    );
  if (!sameLaunch)
    // Nor a cost of security measured between a transpiled and a tsx mesh.
    throw new Error(
      `components_from_dist ${fromDist} but insecure_components_from_dist ${insecure.fromDist}: rerun`,
    );
  if (!sameTelemetryLaunch)
    throw new Error(
      `components_from_dist ${fromDist} but telemetry_components_from_dist ${tele.fromDist}: rerun`,
    );
  writeResults(resultsFile, results, quick);
}

try {
  await main();
} catch (err) {
  console.error("bench failed:", err);
  for (const m of meshes) {
    for (const p of m.procs) {
      if (p.output().trim())
        console.error(`--- ${m.security ?? ""} ${p.name} (pid ${p.pid}) output ---\n${p.output()}`);
    }
  }
  process.exitCode = 1;
} finally {
  for (const m of meshes) await m.down();
  if (cpuProfDir) {
    const pids = meshes
      .flatMap((m) => m.procs.map((p) => `${m.security ?? ""}:${p.name}=${p.pid}`))
      .join(" ");
    console.error(`bench: CPU profiles in ${resolve(cpuProfDir)} (${pids})`);
  }
}
