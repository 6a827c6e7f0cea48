// CLI helpers: NSM_* environment defaults, lists, and signal-driven shutdown.
import { rootLogger } from "../core/log.js";

export function env(name: string, fallback?: string): string | undefined {
  const v = process.env[name];
  return v !== undefined && v !== "" ? v : fallback;
}

export function listOf(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Runs `stop` once on SIGTERM/SIGINT, then exits; a second signal exits at once. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    rootLogger.info({ signal: sig }, "stopping");
    // Logs are written asynchronously: flush them before exiting, or the last lines are lost.
    const exit = (code: number): void => rootLogger.flush(() => process.exit(code));
    stop().then(
      () => exit(0),
      (err: unknown) => {
        rootLogger.error({ err }, "stop failed");
        exit(1);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}
