// The registry under test, in its own process so that the benchmark client and the registry each get a core.
// It runs startRegistry — the same code as `nsm registry` — and is driven by bench/registry.ts over the Node
// IPC channel: it reports its bound URLs, preloads NSEs straight into its tables (instead of 100k gRPC
// calls), reports its CPU time, memory, event-loop delay and disk writes, and stops. Usage (by the benchmark only):
//   node --import tsx bench/lib/registry-child.ts <sqlite|memory> <db path> <expire period ms>
import { readFileSync, rmSync } from "node:fs";
import { basename, dirname } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createSecurity } from "../../src/components/security.js";
import { startRegistry } from "../../src/components/registry.js";
import { benchEndpoint, storedName, storedService } from "./fixtures.js";

export type ChildRequest =
  | { id: number; op: "preload"; from: number; to: number }
  | { id: number; op: "stats" }
  | { id: number; op: "stop" };

export interface ChildStats {
  endpoints: number;
  watchers: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  rssBytes: number;
  /** Bytes this process caused to be written to storage (Linux /proc/self/io); -1 where unavailable. */
  diskWriteBytes: number;
  /** Event-loop delay since the previous stats request: how long the loop was blocked at worst. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
}

export type ChildMessage =
  | { type: "ready"; urls: string[] }
  | { type: "reply"; id: number; stats: ChildStats }
  | { type: "failed"; id: number; error: string };

const [store, dbPath, expireArg] = process.argv.slice(2);
if (!process.send || (store !== "sqlite" && store !== "memory") || !dbPath || !expireArg) {
  console.error("registry-child: run by bench/registry.ts with an IPC channel: <sqlite|memory> <db> <ms>");
  process.exit(2);
}
const expirePeriodMs = Number(expireArg);
const send = (m: ChildMessage): void => {
  process.send?.(m);
};

const running = await startRegistry({
  name: "bench-registry",
  listenOn: ["tcp://127.0.0.1:0"],
  store,
  dbPath,
  expirePeriodMs,
  // The registry benchmark measures the registry, not the transport: plaintext, as its clients are.
  security: createSecurity({ name: "bench-registry", insecure: true }),
});

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

function diskWriteBytes(): number {
  try {
    const m = /^write_bytes: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/** Counters since start, except the event-loop delay, which is since the previous call. */
function stats(): ChildStats {
  const cpu = process.cpuUsage();
  const out: ChildStats = {
    endpoints: running.endpoints.size,
    watchers: running.endpoints.watchers.size,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    rssBytes: process.memoryUsage().rss,
    diskWriteBytes: diskWriteBytes(),
    loopDelayMaxMs: loopDelay.max / 1e6,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
  };
  loopDelay.reset();
  return out;
}

async function preload(from: number, to: number): Promise<void> {
  // Same lifetime as a registration would get, so no record expires during the run.
  const expiresAt = Date.now() + expirePeriodMs;
  for (let start = from; start < to; start += 1000) {
    const batch: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(to, start + 1000); i++)
      batch.push(running.endpoints.put(benchEndpoint(storedName(i), storedService(i), i, expiresAt)));
    await Promise.all(batch);
  }
}

let stopping = false;
async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await running.stop();
  }
  process.exit(code);
}

async function handle(req: ChildRequest): Promise<void> {
  try {
    if (req.op === "preload") await preload(req.from, req.to);
    if (req.op === "stop") {
      send({ type: "reply", id: req.id, stats: stats() });
      await stop(0);
    }
    send({ type: "reply", id: req.id, stats: stats() });
  } catch (err) {
    send({ type: "failed", id: req.id, error: err instanceof Error ? err.message : String(err) });
  }
}

process.on("message", (m: unknown) => void handle(m as ChildRequest));
// The benchmark went away (killed): don't outlive it, and remove the temp dir it can no longer remove.
process.on("disconnect", () => {
  if (stopping) return;
  const dir = dirname(dbPath);
  if (basename(dir).startsWith("nsm-bench-registry-"))
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  void stop(1);
});
send({ type: "ready", urls: running.urls });
