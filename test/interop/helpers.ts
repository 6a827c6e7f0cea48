// Runs nsm-interop-peer (the Go peer that plays upstream NSM, test/interop/peer) for the interop tests: builds
// it with scripts/build-interop-peer.sh (idempotent: a no-op when up to date), starts its subcommands in or out
// of network namespaces, reads the one-JSON-object-per-line results it prints on stdout, stops it by pid.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import type { IdentityFiles } from "../../src/security/identity.js";

const root = new URL("../..", import.meta.url).pathname;
const buildScript = join(root, "scripts/build-interop-peer.sh");

/** Where the build script puts the binary (NSM_INTEROP_BIN_DIR overrides, as for the script). */
export const peerBin = join(
  process.env.NSM_INTEROP_BIN_DIR ?? join(root, ".cache/interop"),
  "nsm-interop-peer",
);

let built = false;

/**
 * Builds the peer if it is missing or older than its sources (the script decides), once per process; with
 * `goTests` the script also runs the peer's Go unit tests. Throws with the script's output when Go is missing
 * or the build fails.
 */
export function ensurePeer(goTests = false): string {
  if (built && !goTests) return peerBin;
  try {
    execFileSync(buildScript, goTests ? ["--test"] : [], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 15 * 60_000,
    });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `scripts/build-interop-peer.sh failed (the interop tests need the Go peer; see the script for what it ` +
        `needs):\n${err.stdout ?? ""}${err.stderr ?? err.message}`,
    );
  }
  built = true;
  return peerBin;
}

/** --cert-file/--key-file/--ca-file for an identity. */
export function svidFlags(f: IdentityFiles): string[] {
  return ["--cert-file", f.certFile, "--key-file", f.keyFile, "--ca-file", f.caFile];
}

/** inode://<dev>/<ino> of a file (a network namespace's bind mount, a socket), as fstat/stat report it. */
export function inodeUrl(path: string): string {
  const st = statSync(path);
  return `inode://${st.dev}/${st.ino}`;
}

export type PeerEvent = Record<string, unknown> & { event?: string; case?: string };

export interface PeerProc {
  proc: ChildProcess;
  pid: number;
  /** Every JSON line printed so far. */
  events: PeerEvent[];
  /** Everything on stderr (logs). */
  stderr: string[];
  /** Resolves with the first event (already seen or to come) that `match` accepts. */
  waitFor(match: (e: PeerEvent) => boolean, timeoutMs?: number, what?: string): Promise<PeerEvent>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGTERM and wait (SIGKILL after graceMs). */
  stop(graceMs?: number): Promise<number | null>;
}

export interface PeerOptions {
  /** Run inside this network namespace (ip netns exec: the pid is the peer's). */
  netns?: string;
}

/** Starts `nsm-interop-peer <args>`. */
export function startPeer(args: string[], opts: PeerOptions = {}): PeerProc {
  const bin = ensurePeer();
  const argv = opts.netns ? ["ip", "netns", "exec", opts.netns, bin, ...args] : [bin, ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const events: PeerEvent[] = [];
  const stderr: string[] = [];
  const listeners = new Set<() => void>();
  let out = "";
  proc.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    let nl: number;
    while ((nl = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as PeerEvent);
      } catch {
        stderr.push(`(stdout, not JSON) ${line}\n`);
      }
      for (const l of listeners) l();
    }
  });
  proc.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  let done = false;
  void exited.then(() => {
    done = true;
    for (const l of listeners) l();
  });
  const describe = () =>
    `${args[0]} events:\n${events.map((e) => JSON.stringify(e).slice(0, 600)).join("\n")}\nstderr:\n${stderr.join("")}`;
  return {
    proc,
    pid: proc.pid!,
    events,
    stderr,
    exited,
    waitFor(match, timeoutMs = 20_000, what = "an event") {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = events.find(match);
          if (hit) {
            cleanup();
            resolve(hit);
          } else if (done) {
            cleanup();
            reject(new Error(`nsm-interop-peer exited (${proc.exitCode}) before ${what}:\n${describe()}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${what} from nsm-interop-peer in ${timeoutMs} ms:\n${describe()}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      process.kill(proc.pid!, "SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Runs `nsm-interop-peer <args>` to its end. */
export async function runPeer(
  args: string[],
  opts: PeerOptions & { timeoutMs?: number } = {},
): Promise<{ code: number | null; events: PeerEvent[]; stderr: string }> {
  const p = startPeer(args, opts);
  const timer = setTimeout(() => p.proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, events: p.events, stderr: p.stderr.join("") };
}

/** A JSON Connection as the peer prints it (protojson, proto field names). */
export interface PeerConnection {
  id: string;
  network_service?: string;
  mechanism?: { cls?: string; type?: string; parameters?: Record<string, string> };
  context?: { ip_context?: { src_ip_addrs?: string[]; dst_ip_addrs?: string[] } };
  path?: { index?: number; path_segments?: { name: string; id: string; token?: string; expires?: string }[] };
  state?: string;
}

/** The claims of a JWT (no verification). */
export function claims(token: string | undefined): { sub?: string; aud?: unknown; exp?: number } {
  const part = (token ?? "").split(".")[1];
  if (!part) return {};
  return JSON.parse(Buffer.from(part, "base64url").toString()) as {
    sub?: string;
    aud?: unknown;
    exp?: number;
  };
}

/**
 * Checks a path as upstream's hops leave it: every segment has a token signed by `subs[i]`, and the tokens
 * chain (aud of segment i is a JSON array holding the sub of segment i+1). Returns the problems found.
 */
export function pathProblems(conn: PeerConnection, subs: string[]): string[] {
  const segs = conn.path?.path_segments ?? [];
  const bad: string[] = [];
  if (segs.length !== subs.length)
    bad.push(`${segs.length} segments (${segs.map((s) => s.name).join(",")}), want ${subs.length}`);
  segs.forEach((s, i) => {
    const c = claims(s.token);
    if (!s.token) bad.push(`segment ${i} (${s.name}) has no token`);
    else if (subs[i] && c.sub !== subs[i]) bad.push(`segment ${i} (${s.name}) sub ${c.sub}, want ${subs[i]}`);
    if (i + 1 < segs.length) {
      const next = claims(segs[i + 1]!.token).sub;
      if (!Array.isArray(c.aud) || !c.aud.includes(next))
        bad.push(
          `segment ${i} (${s.name}) aud ${JSON.stringify(c.aud)} does not name segment ${i + 1}'s sub ${next}`,
        );
    }
  });
  return bad;
}
