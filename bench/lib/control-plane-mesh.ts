// Control-plane topology for bench/control-plane.ts: real `nsm` processes (registry, nsmgrs, noop forwarders,
// icmp-responder endpoints) on sockets in one temp dir, all at NSM_LOG_LEVEL=warn. At that level the
// components do not log their "ready" lines, so readiness is observed from outside: a tcp://127.0.0.1:0
// listener's port is read from /proc (the process's LISTEN sockets), and unix sockets are dialled until
// they answer. Every process is stopped by pid and the temp dir removed by `down()`, or synchronously by
// `killNow()` from an exit/signal handler.
// Security (`BenchMesh`'s `security`): "mtls" makes a throwaway trust domain (spiffe://bench.test, its CA in
// this process) and gives every component its own X.509-SVID as files in the temp dir (NSM_CERT_FILE etc.):
// mTLS on every link, unix sockets included, tokens and policies at every hop; the in-process clients share
// one SVID of the same domain (clientSecurity). "insecure" starts every component with NSM_INSECURE=true
// (plaintext, loopback listeners only). Unset, the mesh adds neither and the environment decides.
// Telemetry (`BenchMesh`'s `telemetry`): every component gets NSM_METRICS_LISTEN_ON (a free 127.0.0.1 port
// per component, `metricsTargets`) and/or NSM_OPENTELEMETRYENDPOINT as asked, and both empty (off) otherwise,
// whatever the environment says.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecurity, type Security } from "../../src/components/security.js";
import { GrpcClient } from "../../src/core/client.js";
import { TrustDomainCa } from "../../src/security/ca.js";
import type { Identity } from "../../src/security/identity.js";
import { StaticIdentitySource } from "../../src/security/source.js";

const nsmBin = new URL("../../bin/nsm.js", import.meta.url).pathname;
const repoRoot = new URL("../..", import.meta.url).pathname;
/** The relays' sources, and what scripts/build.mjs makes of them in dist/bench/ (same build as the components). */
const relayScripts = {
  "grpc-js": { ts: "relay-child.ts", js: "relay-child.js" },
  http2: { ts: "h2-relay-child.ts", js: "h2-relay-child.js" },
} as const;
/** Sources bundled into the built relays besides src/ (a change here makes dist/bench/ stale). */
const relaySources = ["relay-child.ts", "h2-relay-child.ts", "h2call.ts"];

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtimeMs(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Whether `bin/nsm.js` would run the transpiled dist/ (true) or the sources through tsx (false) if started
 * now: the launcher's own rule (dist/.built newer than every file under src/, NSM_FROM_SOURCE unset).
 */
export function launcherUsesDist(): boolean {
  if (process.env.NSM_FROM_SOURCE === "1") return false;
  try {
    return statSync(join(repoRoot, "dist", ".built")).mtimeMs >= newestMtimeMs(join(repoRoot, "src"));
  } catch {
    return false;
  }
}

/**
 * Whether the transport-floor relays can run from dist/bench/, built with the components by
 * scripts/build.mjs: the build has them and is newer than their own sources under bench/lib/. (src/ is the
 * components' part of the rule; the mesh applies it when the components start, see BenchMesh.spawn.)
 */
export function relayBuildIsFresh(): boolean {
  try {
    const built = statSync(join(repoRoot, "dist", ".built")).mtimeMs;
    const here = new URL(".", import.meta.url).pathname;
    return (
      relaySources.every((f) => statSync(join(here, f)).mtimeMs <= built) &&
      Object.values(relayScripts).every((r) => existsSync(join(repoRoot, "dist", "bench", r.js)))
    );
  } catch {
    return false;
  }
}
const clockTicksPerS = 100; // USER_HZ on Linux

export interface StartOptions {
  /** Extra environment for this process only. */
  env?: Record<string, string>;
}

/** One `nsm` component process. */
export class Proc {
  private readonly exited: Promise<void>;
  private stderrTail = "";

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    /** Started from dist/ (transpiled JS) rather than through tsx; see launcherUsesDist. */
    readonly fromDist: boolean,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    const keep = (chunk: Buffer): void => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-8_000);
    };
    child.stderr?.on("data", keep);
    child.stdout?.on("data", keep);
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`${this.name}: not started`);
    return pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the process wrote last (warnings, errors), for failure reports. */
  output(): string {
    return this.stderrTail;
  }

  /** VmRSS and VmHWM (peak) from /proc/<pid>/status, in MB (MiB). */
  memoryMb(): { rss: number; peak: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
    const kb = (field: string): number => {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
      if (!m) throw new Error(`${this.name}: no ${field} in /proc/${this.pid}/status`);
      return Number(m[1]);
    };
    return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
  }

  /** CPU time used so far (user + system), ms. */
  cpuMs(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / clockTicksPerS;
  }

  /** Ports this process listens on over TCP, from its socket fds and /proc/<pid>/net/tcp{,6}. */
  listeningTcpPorts(): number[] {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${this.pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${this.pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        /* fd closed meanwhile */
      }
    }
    const ports: number[] = [];
    for (const table of ["tcp", "tcp6"]) {
      let text: string;
      try {
        text = readFileSync(`/proc/${this.pid}/net/${table}`, "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9]!)) continue;
        ports.push(parseInt(f[1]!.split(":")[1]!, 16));
      }
    }
    return ports;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    process.kill(this.pid, "SIGTERM");
    const t = setTimeout(() => this.killNow(), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  killNow(): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }

  async untilExit(): Promise<void> {
    await this.exited;
  }
}

async function pollUntil<T>(
  what: string,
  proc: Proc,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited before ${what}:\n${proc.output()}`);
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end)
      throw new Error(`${proc.name}: no ${what} after ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves when a gRPC channel to `url` connects (the TLS handshake included, with `security`). */
async function dialable(url: string, timeoutMs: number, security?: Security): Promise<void> {
  const c = security
    ? new GrpcClient(url, security.channelOptions(), security.channelCredentials())
    : new GrpcClient(url);
  try {
    await c.waitReady(timeoutMs);
  } finally {
    c.close();
  }
}

/** How the mesh's components authenticate: see the file comment. */
export type MeshSecurity = "mtls" | "insecure";

/** The trust domain of an "mtls" mesh: made afresh for every mesh, its CA key never leaves this process. */
export const benchTrustDomain = "bench.test";

/** SVIDs of an "mtls" mesh: valid for a day, longer than any run. */
const svidTtlMs = 24 * 3_600_000;

interface Pki {
  ca: TrustDomainCa;
  /** The one SVID every in-process client of the mesh uses. */
  client: Identity;
  /** Dials components to see them ready. */
  probe: Security;
}

/** Telemetry of every component of a mesh; off (both env variables empty) unless asked. */
export interface MeshTelemetry {
  /** NSM_METRICS_LISTEN_ON=127.0.0.1:<a free port> on every component (see BenchMesh.metricsTargets). */
  metrics?: boolean;
  /** NSM_OPENTELEMETRYENDPOINT for every component: host:port (OTLP/gRPC) or http://host:port (OTLP/HTTP). */
  otlpEndpoint?: string;
}

export interface MeshOptions {
  /** mTLS + tokens, or insecure; unset: the mesh adds neither and the environment decides. */
  security?: MeshSecurity;
  /** Metrics and traces of every component; unset: both off. */
  telemetry?: MeshTelemetry;
  /**
   * "dist": components run dist/cli/main.js directly (the build, even if src/ changed since); "source":
   * through tsx (NSM_FROM_SOURCE=1). Unset: bin/nsm.js decides when each starts. A second mesh compared with
   * a first pins the first's way, so an edit of src/ between the two cannot move one of them to tsx.
   */
  launch?: "dist" | "source";
}

export class BenchMesh {
  readonly dir = mkdtempSync(join(tmpdir(), "nsm-bench-cp-"));
  readonly procs: Proc[] = [];
  registryUrl = "";
  private removed = false;
  private pkiReady: Promise<Pki> | undefined;

  /** mTLS + tokens, or insecure; unset: the environment decides. */
  readonly security: MeshSecurity | undefined;
  /** How components start; unset: bin/nsm.js's rule (see launcherUsesDist). */
  private readonly launch: MeshOptions["launch"];
  private readonly telemetry: MeshTelemetry;
  /** Metrics port of each component (by name) when metrics are on. */
  private readonly metricsPorts = new Map<string, number>();

  constructor(
    private readonly readyTimeoutMs = 30_000,
    /** Node options for every process, before the script (e.g. --cpu-prof, not allowed in NODE_OPTIONS). */
    private readonly nodeArgs: string[] = [],
    opts: MeshOptions = {},
  ) {
    this.security = opts.security;
    this.launch = opts.launch;
    this.telemetry = opts.telemetry ?? {};
  }

  /** `host:port` of every component's /metrics (empty when metrics are off), for a Prometheus to scrape. */
  get metricsTargets(): string[] {
    return [...this.metricsPorts.values()].map((port) => `127.0.0.1:${port}`);
  }

  sock(name: string): string {
    return `unix://${join(this.dir, `${name}.sock`)}`;
  }

  /** The CA and the clients' SVID of an "mtls" mesh (made on first use). */
  private pki(): Promise<Pki> {
    this.pkiReady ??= (async () => {
      const ca = await TrustDomainCa.create(benchTrustDomain);
      const client = await ca.issue(`spiffe://${benchTrustDomain}/bench-client`, svidTtlMs);
      const probe = createSecurity({ name: "bench-mesh-probe", source: new StaticIdentitySource(client) });
      return { ca, client, probe };
    })();
    return this.pkiReady;
  }

  /** Environment that sets component `name`'s security: its own SVID files, or NSM_INSECURE=true. */
  private async securityEnv(name: string): Promise<Record<string, string>> {
    if (this.security === "insecure")
      return { NSM_INSECURE: "true", NSM_CERT_FILE: "", NSM_KEY_FILE: "", NSM_CA_FILE: "" };
    if (this.security !== "mtls") return {};
    const { ca } = await this.pki();
    const f = await ca.writeFiles(
      join(this.dir, "svid"),
      name,
      `spiffe://${benchTrustDomain}/${name}`,
      svidTtlMs,
    );
    return { NSM_CERT_FILE: f.certFile, NSM_KEY_FILE: f.keyFile, NSM_CA_FILE: f.caFile, NSM_INSECURE: "" };
  }

  /** What dials the components to see them ready: TLS with the clients' SVID on an "mtls" mesh. */
  private async dialSecurity(): Promise<Security | undefined> {
    return this.security === "mtls" ? (await this.pki()).probe : undefined;
  }

  /**
   * Security for a client in this process (NsmClient, GrpcClient): on an "mtls" mesh every client uses the
   * one client SVID of the mesh's trust domain (spiffe://bench.test/bench-client); otherwise insecure.
   */
  async clientSecurity(): Promise<(name: string) => Security> {
    if (this.security !== "mtls") return (name) => createSecurity({ name, insecure: true });
    const { client } = await this.pki();
    return (name) => createSecurity({ name, source: new StaticIdentitySource(client) });
  }

  /** Environment that turns component `name`'s metrics and traces on or (both empty) off. */
  private async telemetryEnv(name: string): Promise<Record<string, string>> {
    let metrics = "";
    if (this.telemetry.metrics) {
      const port = await freePort();
      this.metricsPorts.set(name, port);
      metrics = `127.0.0.1:${port}`;
    }
    return { NSM_METRICS_LISTEN_ON: metrics, NSM_OPENTELEMETRYENDPOINT: this.telemetry.otlpEndpoint ?? "" };
  }

  /** A component process: its security and telemetry env first, then the caller's. */
  private async component(name: string, args: string[], opts: StartOptions = {}): Promise<Proc> {
    const env = { ...(await this.securityEnv(name)), ...(await this.telemetryEnv(name)) };
    return this.spawn(name, args, { env: { ...env, ...opts.env } });
  }

  /** `relay`: a transport-floor relay, from dist/bench/ when the components run from dist/, else via tsx. */
  private spawn(
    name: string,
    args: string[],
    opts: StartOptions = {},
    relay?: keyof typeof relayScripts,
  ): Proc {
    let fromDist: boolean;
    let entry: string[];
    const env: Record<string, string> = {};
    if (relay === undefined && this.launch === "dist") {
      fromDist = true;
      entry = [join(repoRoot, "dist", "cli", "main.js")];
    } else if (relay === undefined && this.launch === "source") {
      fromDist = false;
      entry = [nsmBin];
      env.NSM_FROM_SOURCE = "1";
    } else if (relay === undefined) {
      fromDist = launcherUsesDist();
      entry = [nsmBin];
    } else {
      // The build the components started from, not src/'s mtime now: an edit elsewhere in the checkout
      // during the run must not move the floor to tsx while the components it is compared with run from dist/.
      const componentsFromDist = this.procs.length > 0 && this.procs.every((p) => p.fromDist);
      fromDist = componentsFromDist && process.env.NSM_FROM_SOURCE !== "1" && relayBuildIsFresh();
      entry = fromDist
        ? [join(repoRoot, "dist", "bench", relayScripts[relay].js)]
        : ["--import", "tsx", new URL(relayScripts[relay].ts, import.meta.url).pathname];
    }
    const child = spawn(process.execPath, [...this.nodeArgs, ...entry, ...args], {
      env: { ...process.env, ...opts.env, ...env, NSM_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const p = new Proc(name, child, fromDist);
    this.procs.push(p);
    return p;
  }

  /** The process's gRPC tcp listener (its metrics listener, when it has one, is not it). */
  private async tcpUrl(p: Proc): Promise<string> {
    const metrics = this.metricsPorts.get(p.name);
    const port = await pollUntil(
      "tcp listener",
      p,
      () => p.listeningTcpPorts().find((x) => x !== metrics),
      this.readyTimeoutMs,
    );
    return `tcp://127.0.0.1:${port}`;
  }

  /** `plain`: dial without TLS whatever the mesh's security (the transport-floor relays are plaintext). */
  private async unixReady(p: Proc, url: string, plain = false): Promise<void> {
    const path = url.slice("unix://".length);
    await pollUntil("unix socket", p, () => (existsSync(path) ? true : undefined), this.readyTimeoutMs);
    await dialable(url, this.readyTimeoutMs, plain ? undefined : await this.dialSecurity());
  }

  /**
   * A transport-floor relay (no NSM logic, passes each call to `next`) listening on a unix socket or on
   * tcp://127.0.0.1:0: bench/lib/relay-child.ts on grpc-js, or bench/lib/h2-relay-child.ts on bare node:http2.
   * `proc.fromDist` says whether it ran from the build (see relayBuildIsFresh). Relays are plaintext, whatever
   * the mesh's security.
   */
  async relay(
    name: string,
    on: "unix" | "tcp",
    next?: string,
    flavour: "grpc-js" | "http2" = "grpc-js",
  ): Promise<{ proc: Proc; url: string }> {
    const listen = on === "unix" ? this.sock(name) : "tcp://127.0.0.1:0";
    const p = this.spawn(name, [listen, ...(next ? [next] : [])], {}, flavour);
    if (on === "tcp") return { proc: p, url: await this.tcpUrl(p) };
    await this.unixReady(p, listen, true);
    return { proc: p, url: listen };
  }

  async registry(opts?: StartOptions): Promise<Proc> {
    const p = await this.component(
      "registry",
      ["registry", "--store", "memory", "--listen-on", "tcp://127.0.0.1:0"],
      opts,
    );
    this.registryUrl = await this.tcpUrl(p);
    await dialable(this.registryUrl, this.readyTimeoutMs, await this.dialSecurity());
    return p;
  }

  /** nsmgr on unix + tcp://127.0.0.1:0; `url` is its unix socket, `publicUrl` its tcp listener. */
  async nsmgr(name: string, opts?: StartOptions): Promise<{ proc: Proc; url: string; publicUrl: string }> {
    const url = this.sock(name);
    const p = await this.component(
      name,
      [
        "nsmgr",
        "--name",
        name,
        "--listen-on",
        `${url},tcp://127.0.0.1:0`,
        "--registry-url",
        this.registryUrl,
      ],
      { env: { NODE_NAME: name, ...opts?.env } },
    );
    // The unix socket is bound first, the tcp one second: once tcp listens, both do.
    const publicUrl = await this.tcpUrl(p);
    await this.unixReady(p, url);
    return { proc: p, url, publicUrl };
  }

  async forwarder(name: string, nsmgrUrl: string, opts?: StartOptions): Promise<Proc> {
    const p = await this.component(
      name,
      [
        "forwarder",
        "noop",
        "--name",
        name,
        "--listen-on",
        this.sock(name),
        "--connect-to",
        nsmgrUrl,
        "--labels",
        "p2p=true",
      ],
      opts,
    );
    await this.unixReady(p, this.sock(name));
    return p;
  }

  async nse(
    name: string,
    nsmgrUrl: string,
    service: string,
    cidr: string,
    opts?: StartOptions,
  ): Promise<Proc> {
    const p = await this.component(
      name,
      [
        "nse",
        "icmp-responder",
        "--name",
        name,
        "--listen-on",
        this.sock(name),
        "--connect-to",
        nsmgrUrl,
        "--services",
        service,
        "--cidr",
        cidr,
      ],
      opts,
    );
    await this.unixReady(p, this.sock(name));
    return p;
  }

  /** Stops every process by pid (last started first) and removes the temp dir (and the SVID files in it). */
  async down(): Promise<void> {
    for (const p of [...this.procs].reverse()) await p.stop().catch(() => p.killNow());
    if (this.pkiReady) (await this.pkiReady.catch(() => undefined))?.probe.close();
    this.removeDir();
  }

  /** For exit/signal handlers: SIGKILL by pid, remove the temp dir, synchronously. */
  killNow(): void {
    for (const p of this.procs) p.killNow();
    this.removeDir();
  }

  private removeDir(): void {
    if (this.removed) return;
    rmSync(this.dir, { recursive: true, force: true });
    this.removed = true;
  }
}

/** A free port on 127.0.0.1 (free when probed: the component binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** CPU time of a process this benchmark did not start as a Proc (a trace or metrics backend), by pid. */
export class PidCpu {
  constructor(
    readonly name: string,
    readonly pid: number,
  ) {}

  private last = 0;

  /** CPU time used so far (user + system), ms; what it used last when it has exited. */
  cpuMs(): number {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      this.last = ((Number(rest[11]) + Number(rest[12])) * 1000) / clockTicksPerS;
    } catch {
      /* gone: keep the last reading */
    }
    return this.last;
  }
}

/** Children of this process whose command name (/proc/<pid>/comm) is `comm`, e.g. the backend a helper spawned. */
export function childrenNamed(comm: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (name === comm && ppid === process.pid) out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Nearest-rank percentile of an ascending array (p in 0..1). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error("percentile of no samples");
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1]!;
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}
