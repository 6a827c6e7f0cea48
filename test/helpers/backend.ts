// What the tests' private backends (Prometheus, Jaeger) share: free ports on 127.0.0.1, a retry when a probed
// port is taken before the backend binds it, and a process in its own group with its temp dir, killed and
// removed on stop() — or when the test process exits or dies of a signal without calling it.
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer } from "node:net";

/** `n` distinct free ports on 127.0.0.1 (all held open together, so no port is handed out twice). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (s) =>
        new Promise<number>((resolve, reject) => {
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve((s.address() as { port: number }).port));
        }),
    ),
  );
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** Runs `start` up to 3 times while it fails with "address already in use" (parallel runs). */
export async function withPortRetry<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (attempt >= 3 || !(e instanceof Error) || !/address already in use/.test(e.message)) throw e;
    }
  }
}

/** Clean-ups of the backends still running, run synchronously when the test process exits or dies of a signal. */
const cleanups = new Set<() => void>();
let hooked = false;
function atProcessEnd(cleanup: () => void): () => void {
  const runAll = (): void => {
    for (const c of cleanups) c();
    cleanups.clear();
  };
  if (!hooked) {
    hooked = true;
    process.once("exit", runAll);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      process.once(sig, () => {
        runAll();
        // Nobody else handles it: die of the signal as we would have without this listener.
        if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
      });
    }
  }
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

export interface BackendProcess {
  child: ChildProcess;
  /** Resolves when the process has exited (or failed to spawn). */
  exit: Promise<void>;
  exited: () => boolean;
  /** The last 40 lines of its output. */
  logs: () => string;
  /** SIGTERM to the group, SIGKILL after 5 s, then the temp dir goes; idempotent. */
  stop: () => Promise<void>;
}

/** Spawns `bin` detached (its own process group) in `dir`, which is removed with it. */
export function spawnBackend(bin: string, args: string[], dir: string): BackendProcess {
  const child = spawn(bin, args, { cwd: dir, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const log: string[] = [];
  const keep = (d: Buffer): void => {
    log.push(d.toString());
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    const done = (): void => {
      exited = true;
      resolve();
    };
    child.once("exit", done);
    child.once("error", (e) => {
      keep(Buffer.from(`spawn ${bin}: ${e.message}\n`));
      done();
    });
  });
  const killGroup = (signal: NodeJS.Signals): void => {
    if (exited || child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      /* already gone */
    }
  };
  const forget = atProcessEnd(() => {
    killGroup("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  let stopping: Promise<void> | undefined;
  return {
    child,
    exit,
    exited: () => exited,
    logs: () => log.join("").split("\n").slice(-40).join("\n"),
    stop: () =>
      (stopping ??= (async () => {
        forget();
        killGroup("SIGTERM");
        const timer = setTimeout(() => killGroup("SIGKILL"), 5_000);
        await exit;
        clearTimeout(timer);
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `ready` every 100 ms until it holds; fails (and stops the backend) when the process exits first or
 * `timeoutMs` passes, with its last output.
 */
export async function untilReady(
  proc: BackendProcess,
  what: string,
  timeoutMs: number,
  ready: () => Promise<boolean>,
): Promise<void> {
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc.exited()) throw new Error(`${what} exited before it was ready:\n${proc.logs()}`);
      if (await ready()) return;
      if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms:\n${proc.logs()}`);
      await sleep(100);
    }
  } catch (e) {
    await proc.stop();
    throw e;
  }
}
