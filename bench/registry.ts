// `npm run bench:registry`: Register throughput, Find latency and watch fan-out latency of the NSM registry,
// measured over gRPC against a registry running in a child process (bench/lib/registry-child.ts, the same
// startRegistry as `nsm registry`). Prints a table and writes bench/results/registry.json (`--out <file>`
// writes it elsewhere). `--quick` runs a scaled-down pass and writes no JSON (for trying changes). More on
// the method and results: bench/README.md.
//
// Register throughput, three phases on fresh processes, same load in each: 64 workers each keep one Register
// in flight (closed loop); warm-up registrations, then rounds of new NSEs; a figure is the median round, and
// only calls that succeeded count (failed ones are tallied by checkErrors into failed_calls).
//   - register_per_s (headline, unsuffixed keys): as production registers. A real `nsm nsmgr` child process
//     (started by bench/lib/control-plane-mesh.ts's BenchMesh: bin/nsm.js, unix socket + loopback tcp,
//     --registry-url to the sqlite registry) sits between the client and the registry. Each worker is an endpoint with its own generated
//     identity and its own connection to the nsmgr's unix socket, and sends what Registration.register sends:
//     no expiration, a 5 s deadline, and registryCallMetadata (its token + a one-segment path). The nsmgr
//     runs its whole NSE chain (validate, updatepath, updatetoken, clientinfo, localbypass, replica) and
//     proxies with its own token and the two-segment path; the registry runs updatepath and updatetoken on
//     them. The nsmgr's replica watches every NSE at the registry, as on a node, so the registry also sends
//     each new record to that watch. Three processes share the machine's cores: client, nsmgr, registry.
//   - register_per_s_direct: the raw registry, as before: one plain RegistryClient channel straight to the
//     registry, no path, no token (the registry's token and path work is skipped). Same store, same load.
//     register_direct_over_nsmgr_ratio is direct ÷ headline: what the nsmgr hop, path and tokens cost.
//   - register_per_s_direct_memory_store: the direct route with the memory store;
//     register_memory_over_sqlite_ratio_direct is the cost of durability.
// Per phase: Register latency p50/p99, CPU of each process during the rounds (registry from its own
// process.cpuUsage over IPC, nsmgr from /proc/<pid>/stat, client from this process) as % of one core and µs
// per Register, registry event-loop delay, registry disk writes per Register, the nsmgr's RSS after the
// rounds, and CPU used by everything else on the machine. The registry's NSE count is checked at the end.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import {
  NetworkServiceEndpointRegistryService as NSE,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointResponse,
} from "../src/api/registry.js";
import { GrpcClient, type ServerStream } from "../src/core/client.js";
import { createSecurity } from "../src/components/security.js";
import { RegistryClient, endpoint } from "../src/registry/client.js";
import { registryCallMetadata } from "../src/registry/security.js";
import {
  benchEndpoint,
  median,
  nsesPerService,
  percentile,
  prng,
  storedName,
  storedService,
} from "./lib/fixtures.js";
import { BenchMesh, type Proc } from "./lib/control-plane-mesh.js";
import type { ChildMessage, ChildRequest, ChildStats } from "./lib/registry-child.js";
import { checkErrors, writeResults, type RoundResult } from "./lib/report.js";

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
const outIdx = process.argv.indexOf("--out");
const resultsFile =
  outIdx > 0 && process.argv[outIdx + 1]
    ? resolve(process.argv[outIdx + 1]!)
    : join(benchDir, "results", "registry.json");

// ---- cleanup: child processes are stopped by pid and temp dirs removed, on success, failure or signal ----

const children = new Set<RegistryProcess>();
/** The meshes holding the nsmgr of a through-nsmgr phase. */
const nsmgrs = new Set<BenchMesh>();
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
  for (const n of nsmgrs) n.killNow();
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

/** Where the Registers go: through a real nsmgr as endpoints register (the headline), or to the registry. */
type Route = "nsmgr" | "direct";

interface RegisterResult {
  perSecond: number[];
  latenciesMs: number[];
  serverCpuPct: number;
  clientCpuPct: number;
  /** nsmgr process CPU during the rounds (100 = one core); NaN on the direct route. */
  nsmgrCpuPct: number;
  /** Registry process CPU time (user + system) per Register call. */
  serverCpuUsPerOp: number;
  /** nsmgr CPU time per Register call; NaN on the direct route. */
  nsmgrCpuUsPerOp: number;
  /** nsmgr RSS after the rounds (it keeps every NSE registered through it); NaN on the direct route. */
  nsmgrRssBytes: number;
  nsmgrFromDist: boolean;
  /** CPU used by everything else on the machine during the rounds (100 = one core); NaN off Linux. */
  otherCpuPct: number;
  /** Worst registry event-loop stall over the rounds, and the worst round's p99 event-loop delay. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  /** Bytes written to storage by the registry per Register; NaN where unknown. */
  diskBytesPerOp: number;
}

/** Sends one Register as worker `w`. */
interface Registrar {
  register(w: number, nse: NetworkServiceEndpoint): Promise<unknown>;
  ready(): Promise<void>;
  close(): void;
}

/** A plain client on one channel, no path and no token (the CLI's way): the raw registry. */
function directRegistrar(url: string): Registrar {
  const client = new RegistryClient(url);
  return {
    register: (_w, nse) => client.registerEndpoint(nse),
    ready: () => client.grpc.waitReady(10_000),
    close: () => client.close(),
  };
}

/**
 * One endpoint per worker, as separate endpoint processes on the nsmgr's node would be: each has its own
 * generated identity and its own HTTP/2 connection to the nsmgr's unix socket, and sends each Register as
 * Registration.register does (registrationOf in src/components/common.ts): no expiration asked for, a 5 s
 * deadline, and registryCallMetadata — the endpoint's token plus a one-segment registration path.
 */
function endpointRegistrars(nsmgrUrl: string, count: number): Registrar {
  const eps = Array.from({ length: count }, (_, w) => {
    const security = createSecurity({ name: `bench-nse-w${w}`, insecure: true });
    const client = new RegistryClient(nsmgrUrl, security.channelCredentials(), {
      ...security.channelOptions(),
      "grpc.use_local_subchannel_pool": 1,
    });
    return { security, client };
  });
  return {
    async register(w, nse) {
      const ep = eps[w % eps.length]!;
      return ep.client.registerEndpoint(
        { ...nse, expirationTime: undefined },
        { timeoutMs: 5000, metadata: await registryCallMetadata(ep.security.sign, undefined, nse.name) },
      );
    },
    ready: async () => void (await Promise.all(eps.map((e) => e.client.grpc.waitReady(10_000)))),
    close: () => eps.forEach((e) => e.client.close()),
  };
}

/** `cfg.inFlight` workers, each awaiting its Register before sending the next (closed loop). */
async function registerRound(registrar: Registrar, records: NetworkServiceEndpoint[]): Promise<RoundResult> {
  const latenciesMs: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const worker = async (w: number): Promise<void> => {
    for (let i = next++; i < records.length; i = next++) {
      const start = performance.now();
      try {
        await registrar.register(w, records[i]!);
        latenciesMs.push(performance.now() - start);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.inFlight }, (_, w) => worker(w)));
  return { latenciesMs, wallMs: performance.now() - t0, errors, firstError };
}

function registerRecords(tag: string, count: number): NetworkServiceEndpoint[] {
  return Array.from({ length: count }, (_, i) =>
    benchEndpoint(`${tag}-${i}`, `svc-${tag}-${Math.floor(i / nsesPerService)}`, i),
  );
}

/** The nsmgr's replica watches every NSE at the registry, as on a real node: wait until it does. */
async function untilWatched(reg: RegistryProcess, nsmgr: Proc): Promise<void> {
  const end = Date.now() + 30_000;
  while ((await reg.stats()).watchers < 1) {
    if (!nsmgr.running) throw new Error(`nsmgr exited:\n${nsmgr.output()}`);
    if (Date.now() > end) throw new Error(`the nsmgr's replica did not watch the registry within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Proves the headline measured what production does: the record reached the registry through the nsmgr
 * (localbypass put the nsmgr's URL in it) with the endpoint's token and path (its path_ids name the endpoint
 * first, then the nsmgr).
 */
async function checkProxied(registryUrl: string, name: string): Promise<void> {
  const client = new RegistryClient(registryUrl);
  try {
    const [nse] = await client.findEndpoints({ name });
    const ids = nse?.pathIds ?? [];
    if (
      !nse ||
      nse.url.startsWith("tcp://10.") ||
      !/\/bench-nse-w\d+$/.test(ids[0] ?? "") ||
      !ids[1]?.endsWith("/bench-nsmgr")
    )
      throw new Error(
        `NSE ${name} at the registry does not look registered through the nsmgr with path + token: ` +
          JSON.stringify(nse ? { url: nse.url, pathIds: ids } : null),
      );
  } finally {
    client.close();
  }
}

async function registerPhase(store: "sqlite" | "memory", route: Route): Promise<RegisterResult> {
  const what = `${route === "nsmgr" ? "through nsmgr" : "direct"}, ${store}`;
  const dir = makeTempDir();
  const { reg, url } = await RegistryProcess.start(store, join(dir, "registry.db"));
  let mesh: BenchMesh | undefined;
  let nsmgr: Proc | undefined;
  let registrar: Registrar | undefined;
  try {
    if (route === "nsmgr") {
      // The same launcher as bench:control-plane's components (bin/nsm.js, unix socket + loopback tcp).
      mesh = new BenchMesh(undefined, [], { security: "insecure" });
      nsmgrs.add(mesh);
      mesh.registryUrl = url;
      const started = await mesh.nsmgr("bench-nsmgr");
      nsmgr = started.proc;
      await untilWatched(reg, nsmgr);
      registrar = endpointRegistrars(started.url, cfg.inFlight);
    } else registrar = directRegistrar(url);
    await registrar.ready();
    const warm = await registerRound(registrar, registerRecords("warmup", cfg.registerWarmup));
    checkErrors(`Register ${what}, warm-up`, warm, cfg.registerWarmup);
    let failed = warm.errors;
    const out: RegisterResult = {
      perSecond: [],
      latenciesMs: [],
      serverCpuPct: 0,
      clientCpuPct: 0,
      nsmgrCpuPct: NaN,
      serverCpuUsPerOp: 0,
      nsmgrCpuUsPerOp: NaN,
      nsmgrRssBytes: NaN,
      nsmgrFromDist: nsmgr?.fromDist ?? false,
      otherCpuPct: 0,
      loopDelayMaxMs: 0,
      loopDelayP99Ms: 0,
      diskBytesPerOp: 0,
    };
    let serverCpu = 0;
    let clientCpu = 0;
    let nsmgrCpu = 0;
    let machineCpu = 0;
    let diskBytes = 0;
    let wall = 0;
    let done = 0;
    for (let r = 0; r < cfg.registerRounds; r++) {
      const records = registerRecords(`round${r}`, cfg.registerPerRound);
      const s0 = await reg.stats();
      const n0 = (nsmgr?.cpuMs() ?? 0) * 1000;
      const m0 = machineBusyUs();
      const c0 = process.cpuUsage();
      const round = await registerRound(registrar, records);
      const c1 = process.cpuUsage(c0);
      const m1 = machineBusyUs();
      const n1 = (nsmgr?.cpuMs() ?? 0) * 1000;
      const s1 = await reg.stats();
      checkErrors(`Register ${what}, round ${r + 1}`, round, records.length);
      failed += round.errors;
      const seconds = round.wallMs / 1000;
      wall += seconds * 1e6;
      done += round.latenciesMs.length;
      serverCpu += cpuUs(s1) - cpuUs(s0);
      nsmgrCpu += n1 - n0;
      clientCpu += c1.user + c1.system;
      machineCpu += m1 - m0;
      diskBytes += s1.diskWriteBytes - s0.diskWriteBytes;
      out.loopDelayMaxMs = Math.max(out.loopDelayMaxMs, s1.loopDelayMaxMs);
      out.loopDelayP99Ms = Math.max(out.loopDelayP99Ms, s1.loopDelayP99Ms);
      // Only calls that succeeded count as throughput.
      out.perSecond.push(round.latenciesMs.length / seconds);
      out.latenciesMs.push(...round.latenciesMs);
      console.error(
        `  ${what}, round ${r + 1}: ${Math.round(round.latenciesMs.length / seconds)} Registers/s`,
      );
    }
    // A Register that failed at the client (a deadline) may still have been stored.
    const expected = cfg.registerWarmup + cfg.registerRounds * cfg.registerPerRound;
    const { endpoints } = await reg.stats();
    if (endpoints > expected || endpoints < expected - failed)
      throw new Error(
        `registry holds ${endpoints} NSEs after the Register rounds (${what}), expected ${expected}` +
          (failed ? ` less up to ${failed} failed calls` : ""),
      );
    if (route === "nsmgr") await checkProxied(url, "round0-0");
    out.serverCpuPct = (100 * serverCpu) / wall;
    out.clientCpuPct = (100 * clientCpu) / wall;
    out.serverCpuUsPerOp = serverCpu / done;
    if (nsmgr) {
      out.nsmgrCpuPct = (100 * nsmgrCpu) / wall;
      out.nsmgrCpuUsPerOp = nsmgrCpu / done;
      out.nsmgrRssBytes = nsmgr.memoryMb().rss * 2 ** 20;
    }
    out.otherCpuPct = (100 * (machineCpu - serverCpu - clientCpu - nsmgrCpu)) / wall;
    out.diskBytesPerOp = reg.lastStats && reg.lastStats.diskWriteBytes >= 0 ? diskBytes / done : NaN;
    return out;
  } finally {
    registrar?.close();
    if (mesh) {
      await mesh.down();
      nsmgrs.delete(mesh);
    }
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

/** A Find that answered with the wrong records: a bug, which fails the run instead of being counted. */
class WrongAnswer extends Error {}

async function timeFind(
  client: RegistryClient,
  query: Partial<NetworkServiceEndpoint>,
  expect: number,
): Promise<number> {
  const start = performance.now();
  const found = await client.findEndpoints(query);
  const ms = performance.now() - start;
  if (found.length !== expect)
    throw new WrongAnswer(`Find ${JSON.stringify(query)} returned ${found.length} NSEs, expected ${expect}`);
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
  const run = async (what: string, fn: () => Promise<number>, n: number): Promise<number[]> => {
    const r: RoundResult = { latenciesMs: [], wallMs: 0, errors: 0 };
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      try {
        r.latenciesMs.push(await fn());
      } catch (err) {
        if (err instanceof WrongAnswer) throw err;
        r.errors++;
        r.firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
    r.wallMs = performance.now() - t0;
    checkErrors(`${what}, ${k(size)} NSEs`, r, n);
    return r.latenciesMs;
  };
  const sample = async (what: string, fn: () => Promise<number>): Promise<number[]> => {
    await run(`${what} warm-up`, fn, cfg.findWarmup);
    return run(what, fn, cfg.findSamples);
  };
  // Both processes need a few thousand calls before V8 has optimised the call path; the first Finds after
  // the registry starts are recorded on their own ("cold"), then the process-wide warm-up runs.
  let coldByNameMs: number[] | undefined;
  if (loaded === 0) {
    coldByNameMs = await run("Find by name, cold", byName, cfg.findSamples);
    await run("Find by name, process warm-up", byName, cfg.findProcessWarmup);
    await run("Find by service, process warm-up", byService, cfg.findProcessWarmup / 4);
  }
  const byNameMs = await sample("Find by name", byName);
  const byServiceMs = await sample("Find by service", byService);
  const { rssBytes } = await reg.stats();
  return { size, byNameMs, byServiceMs, coldByNameMs, preloadSeconds, rssBytes };
}

// ---- watch fan-out ----

interface Pending {
  name: string;
  t0: number;
  remaining: number;
  /** This event's samples, kept only if its Register succeeded. */
  got: number[];
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
  const registers: RoundResult = { latenciesMs: [], wallMs: 0, errors: 0 };
  let fired = 0;
  let measured = 0;

  const read = async (s: ServerStream<NetworkServiceEndpointResponse>): Promise<void> => {
    try {
      for await (const ev of s) {
        const now = performance.now();
        const p = pending;
        if (!p || ev.deleted || ev.networkServiceEndpoint?.name !== p.name) continue;
        if (p.record) p.got.push(now - p.t0);
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
    const p: Pending = { name, t0: 0, remaining: watchers, got: [], record, done };
    pending = p;
    fired++;
    p.t0 = performance.now();
    try {
      await registrar.registerEndpoint(nse);
      registers.latenciesMs.push(performance.now() - p.t0);
    } catch (err) {
      // Counted, and its event (which may or may not come) is not waited for.
      pending = undefined;
      registers.errors++;
      registers.firstError ??= err instanceof Error ? err.message : String(err);
      return;
    }
    await within(all, cfg.eventTimeoutMs, `event ${name} at ${watchers} watchers`).catch((err: Error) => {
      throw new Error(
        `${err.message}: ${p.remaining} watchers did not get it${readerError ? ` (${readerError.message})` : ""}`,
      );
    });
    if (record) {
      samples.push(...p.got);
      measured++;
    }
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
    const t0 = performance.now();
    for (let i = 1; i <= cfg.watchEvents; i++) await fire(`${service}-${i}`, i, true);
    registers.wallMs = performance.now() - t0;
    checkErrors(`watch fan-out to ${watchers}, Register calls`, registers, fired);
    if (samples.length !== watchers * measured)
      throw new Error(`got ${samples.length} fan-out samples, expected ${watchers * measured}`);
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

  console.error(`bench: Register throughput through an nsmgr (endpoints' path + token), sqlite registry`);
  const viaNsmgr = await registerPhase("sqlite", "nsmgr");
  console.error(`bench: Register throughput straight to the registry, sqlite store`);
  const direct = await registerPhase("sqlite", "direct");
  console.error(`bench: Register throughput straight to the registry, memory store`);
  const directMemory = await registerPhase("memory", "direct");
  const perRound = `median of ${cfg.registerRounds} × ${k(cfg.registerPerRound)}, ${cfg.inFlight} in flight`;
  const rate = (r: RegisterResult): number => median(r.perSecond);
  add({
    key: "register_per_s",
    label: `Register through an nsmgr, endpoints' path + token, sqlite registry (${perRound})`,
    value: rate(viaNsmgr),
    unit: "/s",
  });
  add({
    key: "register_per_s_direct",
    label: "Register straight to the registry, no path/token, sqlite (raw registry, same method)",
    value: rate(direct),
    unit: "/s",
    // The registry's own target: one node's nsmgr sees its node's endpoints, the registry every node's.
    target: { op: ">=", value: 5_000 },
  });
  add({
    key: "register_direct_over_nsmgr_ratio",
    label: "  direct/through-nsmgr throughput ratio (cost of the nsmgr hop, path and tokens)",
    value: rate(direct) / rate(viaNsmgr),
    unit: "×",
  });
  add({
    key: "register_per_s_direct_memory_store",
    label: "Register straight to the registry, memory store (baseline, same method)",
    value: rate(directMemory),
    unit: "/s",
  });
  add({
    key: "register_memory_over_sqlite_ratio_direct",
    label: "  direct: memory/sqlite throughput ratio (cost of the durable store)",
    value: rate(directMemory) / rate(direct),
    unit: "×",
  });
  // Per-route details; the through-nsmgr figures keep the unsuffixed keys, as the headline does.
  const routes: [RegisterResult, string, string][] = [
    [viaNsmgr, "", "through nsmgr"],
    [direct, "_direct", "direct"],
  ];
  for (const [r, sfx, name] of routes) {
    const lat = sortAsc(r.latenciesMs);
    add({
      key: `register_per_s_min_round${sfx}`,
      label: `  ${name}: slowest round`,
      value: Math.min(...r.perSecond),
      unit: "/s",
    });
    add({
      key: `register_per_s_max_round${sfx}`,
      label: `  ${name}: fastest round`,
      value: Math.max(...r.perSecond),
      unit: "/s",
    });
    add({
      key: `register_latency_p50_ms${sfx}`,
      label: `  ${name}: Register latency p50 under load`,
      value: percentile(lat, 0.5),
      unit: "ms",
    });
    add({
      key: `register_latency_p99_ms${sfx}`,
      label: `  ${name}: Register latency p99 under load`,
      value: percentile(lat, 0.99),
      unit: "ms",
    });
  }
  const cpuRows: [RegisterResult, string, string][] = [
    ...routes,
    [directMemory, "_direct_memory_store", "direct, memory"],
  ];
  for (const [r, sfx, name] of cpuRows) {
    add({
      key: `register_registry_cpu_pct${sfx}`,
      label: `  ${name}: registry process CPU during rounds (100 = one core)`,
      value: r.serverCpuPct,
      unit: "%",
    });
    if (!Number.isNaN(r.nsmgrCpuPct))
      add({
        key: `register_nsmgr_cpu_pct${sfx}`,
        label: `  ${name}: nsmgr process CPU during rounds`,
        value: r.nsmgrCpuPct,
        unit: "%",
      });
    add({
      key: `register_client_cpu_pct${sfx}`,
      label: `  ${name}: benchmark client CPU during rounds`,
      value: r.clientCpuPct,
      unit: "%",
    });
  }
  for (const [r, sfx, name] of cpuRows) {
    add({
      key: `register_registry_cpu_us_per_op${sfx}`,
      label: `  ${name}: registry CPU time per Register`,
      value: r.serverCpuUsPerOp,
      unit: "µs",
    });
    if (!Number.isNaN(r.nsmgrCpuUsPerOp))
      add({
        key: `register_nsmgr_cpu_us_per_op${sfx}`,
        label: `  ${name}: nsmgr CPU time per Register`,
        value: r.nsmgrCpuUsPerOp,
        unit: "µs",
      });
  }
  add({
    key: "register_nsmgr_rss_mb",
    label: `  through nsmgr: nsmgr RSS after the rounds (${k(cfg.registerWarmup + cfg.registerRounds * cfg.registerPerRound)} NSEs registered through it)`,
    value: viaNsmgr.nsmgrRssBytes / 2 ** 20,
    unit: "MB",
  });
  add({
    key: "register_nsmgr_from_dist",
    label: "  through nsmgr: nsmgr ran the transpiled dist/ (1) or the sources through tsx (0)",
    value: viaNsmgr.nsmgrFromDist ? 1 : 0,
    unit: "",
  });
  for (const [r, sfx, name] of cpuRows) {
    add({
      key: `register_registry_loop_delay_p99_ms${sfx}`,
      label: `  ${name}: registry event-loop delay p99 (worst round)`,
      value: r.loopDelayP99Ms,
      unit: "ms",
    });
    add({
      key: `register_registry_loop_stall_max_ms${sfx}`,
      label: `  ${name}: longest registry event-loop stall during rounds`,
      value: r.loopDelayMaxMs,
      unit: "ms",
    });
  }
  for (const [r, sfx, name] of routes) {
    if (Number.isNaN(r.diskBytesPerOp)) continue;
    add({
      key: `register_registry_disk_write_kb_per_op${sfx}`,
      label: `  ${name}: bytes the registry wrote to disk per Register (WAL + checkpoints)`,
      value: r.diskBytesPerOp / 1024,
      unit: "KiB",
    });
  }
  const contention: string[] = [];
  const other = (phase: string, pct: number, key: string): void => {
    if (Number.isNaN(pct)) return;
    add({ key, label: `  other CPU use on the machine during ${phase}`, value: pct, unit: "%" });
    if (pct > cfg.otherCpuWarnPct) contention.push(`${phase}: ${pct.toFixed(0)}% of a core`);
  };
  for (const [r, sfx, name] of cpuRows)
    other(`Register rounds (${name})`, r.otherCpuPct, `register_other_cpu_pct${sfx}`);

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
      `headline Register: ${cfg.inFlight} endpoints (own identity + connection each) → \`nsm nsmgr\` ` +
        `(${viaNsmgr.nsmgrFromDist ? "dist/" : "tsx"}, unix socket) → registry: three processes on ${cpu.length} cores;`,
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
