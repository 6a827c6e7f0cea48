// `--metrics-listen-on` (NSM_METRICS_LISTEN_ON), which every component command has: turns metrics on and
// serves them for Prometheus at http://<host:port>/metrics. Without it metrics stay off and nothing listens.
import type { Command } from "commander";
import { rootLogger } from "../core/log.js";
import { parseListenAddress } from "../observability/metrics/address.js";
import { enableMetrics } from "../observability/metrics/registry.js";
import { startMetricsServer } from "../observability/metrics/server.js";
import { env } from "./util.js";

const flag = "--metrics-listen-on";

export interface MetricsFlags {
  metricsListenOn?: string;
}

export function withMetricsFlags(cmd: Command): Command {
  return cmd.option(
    `${flag} <host:port>`,
    "serve Prometheus metrics at http://<host:port>/metrics (host:port or tcp://host:port; :9090 is every " +
      "interface); off unless given (NSM_METRICS_LISTEN_ON)",
    env("NSM_METRICS_LISTEN_ON"),
  );
}

/**
 * Starts the metrics server the flags ask for, before the component starts (its gauges register only when
 * metrics are on, and a bad value should fail before anything else runs). Resolves with its stop.
 */
export async function metricsFrom(o: MetricsFlags): Promise<{ stop(): Promise<void> }> {
  if (o.metricsListenOn === undefined) return { stop: () => Promise.resolve() };
  const address = parseListenAddress(o.metricsListenOn, flag);
  try {
    return await startMetricsServer(address, await enableMetrics(), rootLogger);
  } catch (err) {
    throw new Error(`${flag}: ${(err as Error).message}`);
  }
}
