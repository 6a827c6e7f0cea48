// The nsmgr that bench/registry.ts registers through: a real `nsm nsmgr` process (bin/nsm.js, as a node runs
// it) on a unix socket (where a node's endpoints reach it) and a loopback tcp port (its public URL, which
// localbypass writes into the records), proxying to the registry under test with --registry-url. At
// NSM_LOG_LEVEL=warn it logs no "ready" line, so readiness is its unix socket answering gRPC. CPU time and RSS
// are read from /proc/<pid>; it is stopped by pid (SIGTERM, then SIGKILL).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, statSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { GrpcClient } from "../../src/core/client.js";

const repoRoot = new URL("../..", import.meta.url).pathname;
const nsmBin = join(repoRoot, "bin", "nsm.js");
const clockTicksPerS = 100; // USER_HZ on Linux

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtimeMs(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** The launcher's own rule: bin/nsm.js runs dist/ when dist/.built is newer than all of src/. */
function launcherUsesDist(): boolean {
  if (process.env.NSM_FROM_SOURCE === "1") return false;
  try {
    return statSync(join(repoRoot, "dist", ".built")).mtimeMs >= newestMtimeMs(join(repoRoot, "src"));
  } catch {
    return false;
  }
}

/** A loopback port free right now (the nsmgr binds it a moment later; nothing else on loopback races us). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => (addr && typeof addr === "object" ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export class NsmgrProcess {
  private readonly exited: Promise<void>;
  private tail = "";

  private constructor(
    private readonly child: ChildProcess,
    /** unix:// URL: where the node's endpoints register. */
    readonly url: string,
    /** Ran the transpiled dist/ rather than the sources through tsx. */
    readonly fromDist: boolean,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    const keep = (chunk: Buffer): void => {
      this.tail = (this.tail + chunk.toString()).slice(-8_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
  }

  static async start(
    name: string,
    registryUrl: string,
    dir: string,
    timeoutMs = 30_000,
  ): Promise<NsmgrProcess> {
    const sock = join(dir, `${name}.sock`);
    const url = `unix://${sock}`;
    const port = await freePort();
    const fromDist = launcherUsesDist();
    const child = spawn(
      process.execPath,
      [
        nsmBin,
        "nsmgr",
        "--name",
        name,
        "--listen-on",
        `${url},tcp://127.0.0.1:${port}`,
        "--registry-url",
        registryUrl,
      ],
      {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NSM_LOG_LEVEL: "warn", NODE_NAME: name },
      },
    );
    const p = new NsmgrProcess(child, url, fromDist);
    const end = Date.now() + timeoutMs;
    while (!existsSync(sock)) {
      if (!p.running) throw new Error(`nsmgr exited before listening:\n${p.output()}`);
      if (Date.now() > end) throw new Error(`nsmgr: no ${sock} after ${timeoutMs} ms:\n${p.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const c = new GrpcClient(url);
    try {
      await c.waitReady(Math.max(1, end - Date.now()));
    } finally {
      c.close();
    }
    return p;
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error("nsmgr: not started");
    return pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the process wrote last (warnings, errors), for failure reports. */
  output(): string {
    return this.tail;
  }

  /** CPU time used so far (user + system), µs, at the kernel's 10 ms tick resolution. */
  cpuUs(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1e6) / clockTicksPerS;
  }

  rssBytes(): number {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
    if (!m) throw new Error(`nsmgr: no VmRSS in /proc/${this.pid}/status`);
    return Number(m[1]) * 1024;
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  async stop(): Promise<void> {
    if (!this.running) return;
    process.kill(this.pid, "SIGTERM");
    const t = setTimeout(() => this.killNow(), 5_000);
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
}
