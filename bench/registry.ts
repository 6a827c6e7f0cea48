// `npm run bench:registry`: Register throughput, Find latency and watch fan-out latency of the NSM registry,
// measured over gRPC against a registry running in a child process (bench/lib/registry-child.ts, the same
// startRegistry as `nsm registry`). Prints a table and writes bench/results/registry.json. Method and
// results: bench/README.md. `--quick` runs a scaled-down pass and writes no JSON (for trying changes).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import {
  NetworkServiceEndpointRegistryService as NSE,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointResponse,
} from "../src/api/registry.js";
import { GrpcClient, type ServerStream } from "../src/core/client.js";
import { RegistryClient, endpoint } from "../src/registry/client.js";
import {
  benchEndpoint,
  median,
  nsesPerService,
  percentile,
  prng,
  storedName,
  storedService,
} from "./lib/fixtures.js";
import type { ChildMessage, ChildRequest, ChildStats } from "./lib/registry-child.js";
import { writeResults } from "./lib/report.js";

const quick = process.argv.includes("--quick");
const cfg = {
  /** Concurrent in-flight Register calls. */
  inFlight: 64,
  registerRounds: quick ? 3 : 5,
  registerPerRound: quick ? 2_000 : 20_000,
  registerWarmup: quick ? 500 : 2_000,
  findSizes: quick ? [1_000, 10_000] : [1_000, 10_000, 100_000],
  findSamples: quick ? 300 : 2_000,
  /** Warm-up calls before each Find measurement. */
  findWarmup: 500,
  /** Find calls (by name; a quarter as many by service) after registry start, before the first measurement. */
  findProcessWarmup: quick ? 2_000 : 6_000,
  watchers: 100,
  watchEvents: quick ? 50 : 200,
  watchWarmup: 20,
  /** Registration lifetime in the registry under test: long enough that nothing expires during the run. */
  expirePeriodMs: 3_600_000,
  eventTimeoutMs: 10_000,
  /** Above this much CPU used by others (100 = one core) during a phase, the run is flagged. */
  otherCpuWarnPct: 15,
};

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = dirname(benchDir);
const childScript = join(benchDir, "lib", "registry-child.ts");
const resultsFile = join(benchDir, "results", "registry.json");

// ---- cleanup: child processes are stopped by pid and temp dirs removed, on success, failure or signal ----

const children = new Set<RegistryProcess>();
const tempDirs = new Set<string>();

function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "nsm-bench-registry-"));
  tempDirs.add(dir);
  return dir;
}

function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

function cleanupSync(): void {
  for (const c of children) c.killNow();
  for (const d of [...tempDirs]) removeTempDir(d);
}

process.on("exit", cleanupSync);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(`bench: ${sig}, stopping registry processes and removing temp dirs`);
    cleanupSync();
    process.exit(130);
  });
}

// ---- the registry child process ----

class RegistryProcess {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (s: ChildStats) => void; reject: (e: Error) => void }
  >();
  private exited = false;
  private readonly exit: Promise<void>;
  readonly url: Promise<string>;

  private constructor(private readonly child: ChildProcess) {
    children.add(this);
    this.exit = new Promise((resolve) => child.once("exit", () => resolve()));
    this.url = new Promise<string>((resolve, reject) => {
      child.on("message", (raw: unknown) => {
        const m = raw as ChildMessage;
        if (m.type === "ready") {
          const url = m.urls[0];
          return url ? resolve(url) : reject(new Error("registry child reported no listen URL"));
        }
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.type === "reply") w?.resolve(m.stats);
        else w?.reject(new Error(`registry child: ${m.error}`));
      });
      child.once("error", reject);
      child.once("exit", (code, signal) => {
        this.exited = true;
        children.delete(this);
        const err = new Error(`registry child (pid ${child.pid}) exited: code ${code}, signal ${signal}`);
        reject(err);
        for (const w of this.waiting.values()) w.reject(err);
        this.waiting.clear();
      });
    });
  }

  static async start(
    store: "sqlite" | "memory",
    dbPath: string,
  ): Promise<{ reg: RegistryProcess; url: string }> {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", childScript, store, dbPath, String(cfg.expirePeriodMs)],
      {
        cwd: repoRoot,
        stdio: ["ignore", "inherit", "inherit", "ipc"],
        env: { ...process.env, NSM_LOG_LEVEL: "warn" },
      },
    );
    const reg = new RegistryProcess(child);
    const url = await within(reg.url, 30_000, `registry child (${store}) to start`);
    return { reg, url };
  }

  request(req: WithoutId<ChildRequest>, timeoutMs = 120_000): Promise<ChildStats> {
    const id = this.nextId++;
    const reply = new Promise<ChildStats>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    const message: ChildRequest = { ...req, id };
    this.child.send(message);
    return within(reply, timeoutMs, `registry child to answer ${req.op}`);
  }

  lastStats: ChildStats | undefined;

  async stats(): Promise<ChildStats> {
    this.lastStats = await this.request({ op: "stats" });
    return this.lastStats;
  }

  /** Asks the child to stop; kills it by pid if it has not exited within 5 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    try {
      await this.request({ op: "stop" }, 5_000);
      await within(this.exit, 5_000, "registry child to exit");
    } catch {
      this.killNow();
      await this.exit;
    }
  }

  killNow(): void {
    if (this.exited || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

/**
 * CPU time (µs) the whole machine spent busy (user, nice, system, irq, softirq) since boot, from /proc/stat;
 * NaN where that is unavailable. Compared with our two processes' own CPU time it shows whether anything
 * else competed for the cores during a measurement.
 */
function machineBusyUs(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
    return ((user + nice + system + irq + softirq) * 1e6) / 100; // USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}

const sortAsc = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const cpuUs = (s: ChildStats): number => s.cpuUserUs + s.cpuSystemUs;

// ---- Register throughput ----

interface RegisterResult {
  perSecond: number[];
  latenciesMs: number[];
  serverCpuPct: number;
  clientCpuPct: number;
  /** Registry process CPU time (user + system) per Register call. */
  serverCpuUsPerOp: number;
  /** CPU used by everything else on the machine during the rounds (100 = one core); NaN off Linux. */
  otherCpuPct: number;
  /** Worst registry event-loop stall over the rounds, and the worst round's p99 event-loop delay. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  /** Bytes written to storage by the registry per Register; NaN where unknown. */
  diskBytesPerOp: number;
}

async function registerRound(client: RegistryClient, records: NetworkServiceEndpoint[]): Promise<number[]> {
  const latencies = new Array<number>(records.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < records.length; i = next++) {
      const start = performance.now();
      await client.registerEndpoint(records[i]!);
      latencies[i] = performance.now() - start;
    }
  };
  await Promise.all(Array.from({ length: cfg.inFlight }, worker));
  return latencies;
}

function registerRecords(tag: string, count: number): NetworkServiceEndpoint[] {
  return Array.from({ length: count }, (_, i) =>
    benchEndpoint(`${tag}-${i}`, `svc-${tag}-${Math.floor(i / nsesPerService)}`, i),
  );
}

async function registerPhase(store: "sqlite" | "memory"): Promise<RegisterResult> {
  const dir = makeTempDir();
  const { reg, url } = await RegistryProcess.start(store, join(dir, "registry.db"));
  const client = new RegistryClient(url);
  try {
    await client.grpc.waitReady(10_000);
    await registerRound(client, registerRecords("warmup", cfg.registerWarmup));
    const out: RegisterResult = {
      perSecond: [],
      latenciesMs: [],
      serverCpuPct: 0,
      clientCpuPct: 0,
      serverCpuUsPerOp: 0,
      otherCpuPct: 0,
      loopDelayMaxMs: 0,
      loopDelayP99Ms: 0,
      diskBytesPerOp: 0,
    };
    let serverCpu = 0;
    let clientCpu = 0;
    let machineCpu = 0;
    let diskBytes = 0;
    let wall = 0;
    for (let r = 0; r < cfg.registerRounds; r++) {
      const records = registerRecords(`round${r}`, cfg.registerPerRound);
      const s0 = await reg.stats();
      const m0 = machineBusyUs();
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const latencies = await registerRound(client, records);
      const seconds = (performance.now() - w0) / 1000;
      const c1 = process.cpuUsage(c0);
      const m1 = machineBusyUs();
      const s1 = await reg.stats();
      wall += seconds * 1e6;
      serverCpu += cpuUs(s1) - cpuUs(s0);
      clientCpu += c1.user + c1.system;
      machineCpu += m1 - m0;
      diskBytes += s1.diskWriteBytes - s0.diskWriteBytes;
      out.loopDelayMaxMs = Math.max(out.loopDelayMaxMs, s1.loopDelayMaxMs);
      out.loopDelayP99Ms = Math.max(out.loopDelayP99Ms, s1.loopDelayP99Ms);
      out.perSecond.push(records.length / seconds);
      out.latenciesMs.push(...latencies);
      console.error(`  ${store} round ${r + 1}: ${Math.round(records.length / seconds)} Registers/s`);
    }
    const expected = cfg.registerWarmup + cfg.registerRounds * cfg.registerPerRound;
    const { endpoints } = await reg.stats();
    if (endpoints !== expected)
      throw new Error(`registry holds ${endpoints} NSEs after the register rounds, expected ${expected}`);
    out.serverCpuPct = (100 * serverCpu) / wall;
    out.clientCpuPct = (100 * clientCpu) / wall;
    out.serverCpuUsPerOp = serverCpu / (cfg.registerRounds * cfg.registerPerRound);
    out.otherCpuPct = (100 * (machineCpu - serverCpu - clientCpu)) / wall;
    out.diskBytesPerOp =
      reg.lastStats && reg.lastStats.diskWriteBytes >= 0
        ? diskBytes / (cfg.registerRounds * cfg.registerPerRound)
        : NaN;
    return out;
  } finally {
    client.close();
    await reg.stop();
    removeTempDir(dir);
  }
}

// ---- Find latency ----

interface FindResult {
  size: number;
  byNameMs: number[];
  byServiceMs: number[];
  /** The first Find-by-name calls after the registry started, before any warm-up. */
  coldByNameMs?: number[];
  preloadSeconds: number;
  rssBytes: number;
}

async function timeFind(
  client: RegistryClient,
  query: Partial<NetworkServiceEndpoint>,
  expect: number,
): Promise<number> {
  const start = performance.now();
  const found = await client.findEndpoints(query);
  const ms = performance.now() - start;
  if (found.length !== expect)
    throw new Error(`Find ${JSON.stringify(query)} returned ${found.length} NSEs, expected ${expect}`);
  return ms;
}

async function findAtSize(
  reg: RegistryProcess,
  client: RegistryClient,
  loaded: number,
  size: number,
): Promise<FindResult> {
  const t0 = performance.now();
  const { endpoints } = await reg.request({ op: "preload", from: loaded, to: size });
  const preloadSeconds = (performance.now() - t0) / 1000;
  if (endpoints !== size) throw new Error(`registry holds ${endpoints} NSEs after preload, expected ${size}`);

  const rand = prng(size);
  const services = size / nsesPerService;
  const byName = (): Promise<number> => timeFind(client, { name: storedName(Math.floor(rand() * size)) }, 1);
  const byService = (): Promise<number> =>
    timeFind(
      client,
      { networkServiceNames: [storedService(Math.floor(rand() * services) * nsesPerService)] },
      nsesPerService,
    );
  const run = async (fn: () => Promise<number>, n: number): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(await fn());
    return out;
  };
  const sample = async (fn: () => Promise<number>): Promise<number[]> => {
    await run(fn, cfg.findWarmup);
    return run(fn, cfg.findSamples);
  };
  // Both processes need a few thousand calls before V8 has optimised the call path; the first Finds after
  // the registry starts are recorded on their own ("cold"), then the process-wide warm-up runs.
  let coldByNameMs: number[] | undefined;
  if (loaded === 0) {
    coldByNameMs = await run(byName, cfg.findSamples);
    await run(byName, cfg.findProcessWarmup);
    await run(byService, cfg.findProcessWarmup / 4);
  }
  const byNameMs = await sample(byName);
  const byServiceMs = await sample(byService);
  const { rssBytes } = await reg.stats();
  return { size, byNameMs, byServiceMs, coldByNameMs, preloadSeconds, rssBytes };
}

// ---- watch fan-out ----

interface Pending {
  name: string;
  t0: number;
  remaining: number;
  record: boolean;
  done: () => void;
}

/**
 * `watchers` concurrent watchEndpoints streams (each on its own HTTP/2 connection, as separate nsmgrs
 * would be) on one service; NSEs of that service are registered one at a time and, per watcher, the time
 * from just before the Register call to receipt of the event is recorded.
 */
async function fanout(reg: RegistryProcess, url: string, watchers: number): Promise<number[]> {
  const service = `fanout-${watchers}`;
  const registrar = new RegistryClient(url);
  const clients: GrpcClient[] = [];
  const streams: ServerStream<NetworkServiceEndpointResponse>[] = [];
  const readers: Promise<void>[] = [];
  const samples: number[] = [];
  let pending: Pending | undefined;
  let readerError: Error | undefined;

  const read = async (s: ServerStream<NetworkServiceEndpointResponse>): Promise<void> => {
    try {
      for await (const ev of s) {
        const now = performance.now();
        const p = pending;
        if (!p || ev.deleted || ev.networkServiceEndpoint?.name !== p.name) continue;
        if (p.record) samples.push(now - p.t0);
        if (--p.remaining === 0) p.done();
      }
    } catch (err) {
      if ((err as { code?: number }).code !== status.CANCELLED) readerError = err as Error;
    }
  };

  const fire = async (name: string, i: number, record: boolean): Promise<void> => {
    const nse = benchEndpoint(name, service, i);
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const p: Pending = { name, t0: 0, remaining: watchers, record, done };
    pending = p;
    p.t0 = performance.now();
    await Promise.all([
      registrar.registerEndpoint(nse),
      within(all, cfg.eventTimeoutMs, `event ${name} at ${watchers} watchers`).catch((err: Error) => {
        throw new Error(
          `${err.message}: ${p.remaining} watchers did not get it${readerError ? ` (${readerError.message})` : ""}`,
        );
      }),
    ]);
  };

  try {
    await registrar.grpc.waitReady(10_000);
    for (let w = 0; w < watchers; w++) {
      const c = new GrpcClient(url, { "grpc.use_local_subchannel_pool": 1 });
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.waitReady(10_000)));
    for (const c of clients) {
      const s = c.serverStream(NSE.find, {
        networkServiceEndpoint: endpoint({ networkServiceNames: [service] }),
        watch: true,
      });
      streams.push(s);
      readers.push(read(s));
    }
    // A watcher that subscribes after this registration still gets it (as a current match), so once every
    // watcher has it, every watcher is subscribed.
    await fire(`${service}-prime`, 0, false);
    for (let i = 1; i <= cfg.watchWarmup; i++) await fire(`${service}-warmup-${i}`, i, false);
    for (let i = 1; i <= cfg.watchEvents; i++) await fire(`${service}-${i}`, i, true);
    if (samples.length !== watchers * cfg.watchEvents)
      throw new Error(`got ${samples.length} fan-out samples, expected ${watchers * cfg.watchEvents}`);
    return samples;
  } finally {
    for (const s of streams) s.cancel();
    await Promise.all(readers);
    for (const c of clients) c.close();
    registrar.close();
    await checkWatchersGone(reg);
  }
}

/** The registry must drop cancelled watchers; a leak is reported, not fatal (the figures stand). */
async function checkWatchersGone(reg: RegistryProcess): Promise<void> {
  try {
    let left = (await reg.stats()).watchers;
    for (let i = 0; i < 40 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = (await reg.stats()).watchers;
    }
    if (left > 0) console.error(`bench: WARNING: registry still holds ${left} watchers 2 s after cancel`);
  } catch {
    /* the registry is gone; the caller's error says why */
  }
}

// ---- report ----

interface Row {
  key: string;
  label: string;
  value: number;
  unit: string;
  target?: { op: "<=" | ">="; value: number };
}

function fmt(v: number, unit: string): string {
  if (unit === "/s" || unit === "MB" || unit === "µs" || unit === "")
    return Math.round(v).toLocaleString("en-US");
  if (unit === "%" || unit === "×" || unit === "s" || unit === "KiB") return v.toFixed(1);
  return v < 10 ? v.toFixed(3) : v.toFixed(1);
}

function printTable(title: string[], rows: Row[]): void {
  const lines = rows.map((r) => {
    const value = `${fmt(r.value, r.unit)} ${r.unit}`.trimEnd();
    const target = r.target
      ? `${r.target.op === "<=" ? "≤" : "≥"} ${fmt(r.target.value, r.unit)} ${r.unit}`
      : "";
    const verdict = !r.target
      ? ""
      : (r.target.op === "<=" ? r.value <= r.target.value : r.value >= r.target.value)
        ? "PASS"
        : "FAIL";
    return [r.label, value, target, verdict, r.key];
  });
  const header = ["measurement", "result", "target", "", "json key"];
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const pad = (cols: string[]): string =>
    cols
      .map((c, i) => (i === 1 || i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  console.log(title.join("\n"));
  console.log();
  console.log(pad(header));
  console.log(pad(widths.map((w) => "-".repeat(w))));
  for (const l of lines) console.log(pad(l));
}

const k = (n: number): string => (n >= 1000 ? `${n / 1000}k` : String(n));

async function main(): Promise<void> {
  const started = performance.now();
  const rows: Row[] = [];
  const add = (row: Row): void => void rows.push(row);

  console.error(`bench: Register throughput, sqlite store`);
  const sqlite = await registerPhase("sqlite");
  console.error(`bench: Register throughput, memory store`);
  const memory = await registerPhase("memory");
  const regLat = sortAsc(sqlite.latenciesMs);
  const perRound = `median of ${cfg.registerRounds} × ${k(cfg.registerPerRound)}, ${cfg.inFlight} in flight`;
  add({
    key: "register_per_s",
    label: `Register, sqlite store (${perRound})`,
    value: median(sqlite.perSecond),
    unit: "/s",
    target: { op: ">=", value: 5_000 },
  });
  add({
    key: "register_per_s_memory_store",
    label: "Register, memory store (baseline, same method)",
    value: median(memory.perSecond),
    unit: "/s",
  });
  add({
    key: "register_memory_over_sqlite_ratio",
    label: "  memory/sqlite throughput ratio (cost of the durable store)",
    value: median(memory.perSecond) / median(sqlite.perSecond),
    unit: "×",
  });
  add({
    key: "register_per_s_min_round",
    label: "  sqlite: slowest round",
    value: Math.min(...sqlite.perSecond),
    unit: "/s",
  });
  add({
    key: "register_per_s_max_round",
    label: "  sqlite: fastest round",
    value: Math.max(...sqlite.perSecond),
    unit: "/s",
  });
  add({
    key: "register_latency_p50_ms",
    label: `  sqlite: Register latency p50 under load`,
    value: percentile(regLat, 0.5),
    unit: "ms",
  });
  add({
    key: "register_latency_p99_ms",
    label: `  sqlite: Register latency p99 under load`,
    value: percentile(regLat, 0.99),
    unit: "ms",
  });
  add({
    key: "register_registry_cpu_pct",
    label: "  sqlite: registry process CPU during rounds (100 = one core)",
    value: sqlite.serverCpuPct,
    unit: "%",
  });
  add({
    key: "register_client_cpu_pct",
    label: "  sqlite: benchmark client CPU during rounds",
    value: sqlite.clientCpuPct,
    unit: "%",
  });
  add({
    key: "register_registry_cpu_pct_memory_store",
    label: "  memory: registry process CPU during rounds",
    value: memory.serverCpuPct,
    unit: "%",
  });
  add({
    key: "register_registry_cpu_us_per_op",
    label: "  sqlite: registry CPU time per Register",
    value: sqlite.serverCpuUsPerOp,
    unit: "µs",
  });
  add({
    key: "register_registry_cpu_us_per_op_memory_store",
    label: "  memory: registry CPU time per Register (baseline)",
    value: memory.serverCpuUsPerOp,
    unit: "µs",
  });
  add({
    key: "register_registry_loop_delay_p99_ms",
    label: "  sqlite: registry event-loop delay p99 (worst round)",
    value: sqlite.loopDelayP99Ms,
    unit: "ms",
  });
  add({
    key: "register_registry_loop_delay_p99_ms_memory_store",
    label: "  memory: registry event-loop delay p99 (worst round)",
    value: memory.loopDelayP99Ms,
    unit: "ms",
  });
  add({
    key: "register_registry_loop_stall_max_ms",
    label: "  sqlite: longest registry event-loop stall during rounds",
    value: sqlite.loopDelayMaxMs,
    unit: "ms",
  });
  add({
    key: "register_registry_loop_stall_max_ms_memory_store",
    label: "  memory: longest registry event-loop stall during rounds",
    value: memory.loopDelayMaxMs,
    unit: "ms",
  });
  if (!Number.isNaN(sqlite.diskBytesPerOp)) {
    add({
      key: "register_registry_disk_write_kb_per_op",
      label: "  sqlite: bytes written to disk per Register (WAL + checkpoints)",
      value: sqlite.diskBytesPerOp / 1024,
      unit: "KiB",
    });
  }
  const contention: string[] = [];
  const other = (phase: string, pct: number, key: string): void => {
    if (Number.isNaN(pct)) return;
    add({ key, label: `  other CPU use on the machine during ${phase}`, value: pct, unit: "%" });
    if (pct > cfg.otherCpuWarnPct) contention.push(`${phase}: ${pct.toFixed(0)}% of a core`);
  };
  other("sqlite Register rounds", sqlite.otherCpuPct, "register_other_cpu_pct");
  other("memory Register rounds", memory.otherCpuPct, "register_other_cpu_pct_memory_store");

  console.error(`bench: Find latency and watch fan-out, sqlite store`);
  const dir = makeTempDir();
  const { reg, url } = await RegistryProcess.start("sqlite", join(dir, "registry.db"));
  const client = new RegistryClient(url);
  try {
    await client.grpc.waitReady(10_000);
    const s0 = await reg.stats();
    const m0 = machineBusyUs();
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    let loaded = 0;
    for (const size of cfg.findSizes) {
      const f = await findAtSize(reg, client, loaded, size);
      loaded = size;
      const byName = sortAsc(f.byNameMs);
      const byService = sortAsc(f.byServiceMs);
      const target = size === 100_000 ? { op: "<=" as const, value: 10 } : undefined;
      const n = `${k(size)} NSEs`;
      console.error(`  ${n}: preloaded in ${f.preloadSeconds.toFixed(1)} s`);
      add({
        key: `find_by_name_p50_ms_${k(size)}`,
        label: `Find by name p50, ${n}`,
        value: percentile(byName, 0.5),
        unit: "ms",
      });
      add({
        key: `find_by_name_p99_ms_${k(size)}`,
        label: `Find by name p99, ${n}`,
        value: percentile(byName, 0.99),
        unit: "ms",
        target,
      });
      add({
        key: `find_by_service_p50_ms_${k(size)}`,
        label: `Find by service p50, ${n} (${nsesPerService} records/reply)`,
        value: percentile(byService, 0.5),
        unit: "ms",
      });
      add({
        key: `find_by_service_p99_ms_${k(size)}`,
        label: `Find by service p99, ${n} (${nsesPerService} records/reply)`,
        value: percentile(byService, 0.99),
        unit: "ms",
        target,
      });
      if (f.coldByNameMs) {
        const cold = sortAsc(f.coldByNameMs);
        const c = `first ${f.coldByNameMs.length} after start, no warm-up`;
        add({
          key: `find_by_name_cold_p50_ms_${k(size)}`,
          label: `  Find by name p50, ${n}, ${c}`,
          value: percentile(cold, 0.5),
          unit: "ms",
        });
        add({
          key: `find_by_name_cold_p99_ms_${k(size)}`,
          label: `  Find by name p99, ${n}, ${c}`,
          value: percentile(cold, 0.99),
          unit: "ms",
        });
      }
      add({
        key: `registry_rss_mb_${k(size)}`,
        label: `  registry RSS with ${n}`,
        value: f.rssBytes / 2 ** 20,
        unit: "MB",
      });
    }
    add({
      key: "find_by_service_records_per_reply",
      label: "  NSEs per service (records streamed by find-by-service)",
      value: nsesPerService,
      unit: "",
    });
    add({
      key: "find_samples_per_measurement",
      label: "  sequential Find samples per measurement (after warm-up)",
      value: cfg.findSamples,
      unit: "",
    });

    const stored = `${k(loaded)} NSEs stored`;
    for (const watchers of [1, cfg.watchers]) {
      console.error(`  fan-out to ${watchers} watcher(s)`);
      const samples = sortAsc(await fanout(reg, url, watchers));
      const w = watchers === 1 ? "1_watcher" : `${watchers}_watchers`;
      const target = watchers === cfg.watchers ? { op: "<=" as const, value: 20 } : undefined;
      const label = `Watch fan-out to ${watchers} watcher${watchers === 1 ? "" : "s"}${watchers === 1 ? " (baseline)" : ""}`;
      add({
        key: `watch_fanout_p50_ms_${w}`,
        label: `${label} p50`,
        value: percentile(samples, 0.5),
        unit: "ms",
      });
      add({
        key: `watch_fanout_p99_ms_${w}`,
        label: `${label} p99`,
        value: percentile(samples, 0.99),
        unit: "ms",
        target,
      });
      add({
        key: `watch_fanout_max_ms_${w}`,
        label: `${label} max`,
        value: samples[samples.length - 1]!,
        unit: "ms",
      });
    }
    add({
      key: "watch_events_per_measurement",
      label: `  events per fan-out measurement (one at a time, ${stored})`,
      value: cfg.watchEvents,
      unit: "",
    });
    const wallUs = (performance.now() - w0) * 1000;
    const c1 = process.cpuUsage(c0);
    const m1 = machineBusyUs();
    const s1 = await reg.stats();
    const ours = cpuUs(s1) - cpuUs(s0) + c1.user + c1.system;
    other("Find and watch", (100 * (m1 - m0 - ours)) / wallUs, "find_watch_other_cpu_pct");
  } finally {
    client.close();
    await reg.stop();
    removeTempDir(dir);
  }

  const cpu = cpus();
  const totalS = (performance.now() - started) / 1000;
  add({ key: "run_duration_s", label: "whole run", value: totalS, unit: "s" });
  printTable(
    [
      `NSM registry benchmark${quick ? " (--quick: scaled down, JSON not written)" : ""}`,
      `${new Date().toISOString()}, ${cpu.length} × ${cpu[0]?.model ?? "unknown CPU"}, Node ${process.version}`,
      "registry: child process (startRegistry, NSM_LOG_LEVEL=warn) on 127.0.0.1 tcp; client: this process;",
      `Find/watch registry: sqlite store; each service has ${nsesPerService} NSEs; Find calls are sequential.`,
    ],
    rows,
  );
  if (contention.length > 0) {
    console.log(
      `\nWARNING: something else used the CPU during the run (${contention.join("; ")}); these figures are` +
        " not clean — rerun on an idle machine.",
    );
  }
  writeResults(
    resultsFile,
    Object.fromEntries(rows.map((r) => [r.key, Number(r.value.toPrecision(6))])),
    quick,
  );
}

try {
  await main();
} catch (err) {
  console.error(`bench: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  for (const c of [...children]) await c.stop();
  cleanupSync();
}
