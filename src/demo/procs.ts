// The demo's processes: every component is an `nsm` process inside its namespace (the dashboard in the root
// namespace, serving on 127.0.0.1), detached (so `--keep` can
// leave them running), logging to a file in the demo's directory. Ready = its ready line is in the log. The
// demo runs secure: every process gets an X.509-SVID of the demo's own throwaway trust domain.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TrustDomainCa } from "../security/ca.js";

/** The demo's trust domain: made afresh for every run, its key never leaves the demo's directory. */
export const demoTrustDomain = "nsm-demo.local";

/** Issues one SVID per demo process and says where its files are (NSM_CERT_FILE etc.). */
export class DemoIdentities {
  private constructor(
    private readonly ca: TrustDomainCa,
    private readonly dir: string,
  ) {}

  static async create(dir: string): Promise<DemoIdentities> {
    return new DemoIdentities(await TrustDomainCa.create(demoTrustDomain), join(dir, "svid"));
  }

  /** Environment that gives process `name` its own SVID (24 h: a --keep demo outlives an hour). */
  async env(name: string): Promise<Record<string, string>> {
    const f = await this.ca.writeFiles(this.dir, name, `spiffe://${demoTrustDomain}/${name}`, 24 * 3_600_000);
    return { NSM_CERT_FILE: f.certFile, NSM_KEY_FILE: f.keyFile, NSM_CA_FILE: f.caFile, NSM_INSECURE: "" };
  }

  files(name: string): { certFile: string; keyFile: string; caFile: string } {
    return {
      certFile: join(this.dir, `${name}-svid.pem`),
      keyFile: join(this.dir, `${name}-key.pem`),
      caFile: join(this.dir, `${name}-bundle.pem`),
    };
  }
}

const nsmBin = new URL("../../bin/nsm.js", import.meta.url).pathname;

export interface DemoProc {
  name: string;
  pid: number;
  log: string;
}

export interface StartSpec {
  name: string;
  /** The namespace to run in; none for the root namespace (the dashboard, which serves on 127.0.0.1). */
  netns?: string;
  args: string[];
  /** The `msg` of the JSON log line that says it is ready; or a stdout line containing it. */
  ready: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

export class Procs {
  readonly list: DemoProc[] = [];

  constructor(
    private readonly dir: string,
    private readonly onStart: (p: DemoProc) => void,
    private readonly identities: DemoIdentities,
  ) {}

  /** Starts the process and waits for its ready line; returns its log lines up to then. */
  async start(spec: StartSpec): Promise<{ proc: DemoProc; lines: string[] }> {
    const log = join(this.dir, "logs", `${spec.name}.log`);
    const svid = await this.identities.env(spec.name);
    const fd = openSync(log, "a");
    const argv = [process.execPath, nsmBin, ...spec.args];
    const [cmd, ...rest] = spec.netns ? ["ip", "netns", "exec", spec.netns, ...argv] : argv;
    const child = spawn(cmd!, rest, {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: { ...process.env, NSM_LOG_LEVEL: "info", ...svid, ...spec.env },
    });
    closeSync(fd);
    child.unref();
    const proc: DemoProc = { name: spec.name, pid: child.pid!, log };
    this.list.push(proc);
    this.onStart(proc);
    let exited: number | null | undefined;
    child.once("exit", (code) => (exited = code));
    const deadline = Date.now() + (spec.timeoutMs ?? 20_000);
    for (;;) {
      const lines = readLines(log);
      if (lines.some((l) => isReady(l, spec.ready))) return { proc, lines };
      if (exited !== undefined)
        throw new DemoStepError(`${spec.name} exited (code ${exited}) before it was ready`, log);
      if (Date.now() > deadline)
        throw new DemoStepError(`${spec.name} not ready in ${spec.timeoutMs ?? 20_000} ms`, log);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** A failed step, with the log that tells why. */
export class DemoStepError extends Error {
  constructor(
    message: string,
    readonly log?: string,
  ) {
    super(message);
  }
}

export function readLines(file: string): string[] {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l !== "");
  } catch {
    return [];
  }
}

function isReady(line: string, ready: string): boolean {
  if (!line.startsWith("{")) return line.includes(ready);
  try {
    return (JSON.parse(line) as { msg?: string }).msg === ready;
  } catch {
    return false;
  }
}

/** Stops processes by pid (SIGTERM, then SIGKILL after `graceMs`), if they are still the demo's. */
export async function stopPids(pids: number[], marker: string, graceMs = 3000): Promise<void> {
  const mine = pids.filter((pid) => isOurs(pid, marker));
  for (const pid of mine) signal(pid, "SIGTERM");
  const end = Date.now() + graceMs;
  while (Date.now() < end && mine.some(alive)) await new Promise((r) => setTimeout(r, 50));
  for (const pid of mine.filter(alive)) signal(pid, "SIGKILL");
}

/** The process still runs and its command line names the demo's directory (a reused pid is not ours). */
export function isOurs(pid: number, marker: string): boolean {
  try {
    return (
      readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker) ||
      readFileSync(`/proc/${pid}/environ`, "utf8").includes(marker)
    );
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}
