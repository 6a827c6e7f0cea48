// Structured logging. One root logger per process; children carry the component, request and connection ids.
import { pino, type Logger } from "pino";

export type { Logger };

const level = process.env.NSM_LOG_LEVEL?.toLowerCase() ?? "info";

/** Logs go to stderr so that commands can keep stdout for their output (JSON, tables). */
export const rootLogger: Logger = pino(
  { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
  pino.destination({ dest: 2, sync: false }),
);

export function componentLogger(component: string, name?: string): Logger {
  return rootLogger.child(name ? { component, name } : { component });
}
