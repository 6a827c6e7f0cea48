// Starts `nsm` component processes for tests and stops them by pid. A component is ready when it logs its
// serving line (JSON on stderr); its bound URLs are read from that line.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Metadata } from "@grpc/grpc-js";
import { generatedIdentity } from "../../src/security/identity.js";
import { generateToken, tokenMetadata } from "../../src/security/token.js";

const nsmBin = new URL("../../bin/nsm.js", import.meta.url).pathname;

/**
 * Components are secure by default and need an SVID. Test meshes that are not about security run them
 * explicitly insecure (their tcp listeners are on loopback or inside the test's own network namespaces); a
 * test that gives an identity (certificate flags or a Workload API socket) gets a secure component.
 */
function securityEnv(args: string[], env: Record<string, string>): Record<string, string> {
  const hasIdentity =
    args.includes("--cert-file") || "SPIFFE_ENDPOINT_SOCKET" in env || "NSM_CERT_FILE" in env;
  return hasIdentity || "NSM_INSECURE" in env
    ? {}
    : { NSM_INSECURE: "true", NSM_ALLOW_INSECURE_NETWORK: "true", NSM_MONITOR_SEE_ALL: testOperatorId };
}

/** The identity insecure test meshes let see every connection (authmonitor), as an operator's tool. */
export const testOperatorId = "spiffe://nsm-ts.local/test-operator";

/** Metadata with a token of `name` (insecure meshes take the claim): e.g. MonitorConnections as someone. */
export async function tokenOf(name = "test-operator"): Promise<Metadata> {
  const t = await generateToken(generatedIdentity(name), [], 10 * 60_000);
  return tokenMetadata(t.token, t.expires);
}

export interface Component {
  proc: ChildProcess;
  pid: number;
  urls: string[];
  logs: string[];
  /** SIGTERM and wait for exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
  /** kill -9 and wait for exit. */
  kill(): Promise<void>;
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface StartOptions {
  /** How long to wait for the ready line; default 20 s. */
  timeoutMs?: number;
  /** Run inside this network namespace (ip netns exec execs, so the pid is the component's). */
  netns?: string;
  /**
   * The process's primary group id (the test runs as root, so any number works; libuv also clears the
   * supplementary groups). SPIRE's unix workload attestor tells processes apart by it: an entry with
   * selectors unix:uid:0 + unix:gid:<gid> gives this component its own SPIFFE ID (see test/helpers/spire.ts).
   */
  gid?: number;
  /** The process's user id; default the test's own. */
  uid?: number;
}

/**
 * Starts `nsm <args>` and resolves when it logs `readyMessage`. The fourth argument is the ready timeout
 * (ms) or StartOptions; `netns` (fifth) is kept for older callers and overrides StartOptions.netns.
 */
export async function startComponent(
  args: string[],
  readyMessage: string,
  env: Record<string, string> = {},
  timeoutOrOptions: number | StartOptions = 20_000,
  /** Run inside this network namespace (ip netns exec execs, so the pid is the component's). */
  netnsArg?: string,
): Promise<Component> {
  const opts: StartOptions =
    typeof timeoutOrOptions === "number" ? { timeoutMs: timeoutOrOptions } : timeoutOrOptions;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const netns = netnsArg ?? opts.netns;
  const argv = [process.execPath, nsmBin, ...args];
  const [cmd, ...rest] = netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
  const proc = spawn(cmd!, rest, {
    env: { ...process.env, NSM_LOG_LEVEL: "info", ...securityEnv(args, env), ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const urls = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${args.join(" ")} not ready in ${timeoutMs} ms:\n${logs.join("")}`)),
      timeoutMs,
    );
    let buf = "";
    proc.stderr.on("data", (chunk: Buffer) => {
      buf += chunk.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line + "\n");
        try {
          const rec = JSON.parse(line) as { msg?: string; urls?: string[] };
          if (rec.msg === readyMessage) {
            clearTimeout(timer);
            resolve(rec.urls ?? []);
          }
        } catch {
          /* not JSON */
        }
      }
    });
    proc.stdout.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(" ")} exited with ${code} before ready:\n${logs.join("")}`));
    });
  });
  const pid = proc.pid!;
  return {
    proc,
    pid,
    urls,
    logs,
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      process.kill(pid, "SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      process.kill(pid, "SIGKILL");
      await exited;
    },
  };
}

/** Runs `nsm …` to completion and returns its output. */
export function runNsm(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [nsmBin, ...args], {
      env: { ...process.env, NSM_LOG_LEVEL: "warn", ...securityEnv(args, env), ...env },
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    p.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
