// The observability flags every component command has: metrics (`--metrics-listen-on`, metrics.ts) and
// traces (`--opentelemetry-endpoint`, NSM_OPENTELEMETRYENDPOINT as upstream). Both are off unless given.
import type { Command } from "commander";
import { startTracing } from "../observability/tracing/tracing.js";
import { metricsFrom, withMetricsFlags, type MetricsFlags } from "./metrics.js";
import { env } from "./util.js";

export interface TelemetryFlags extends MetricsFlags {
  opentelemetryEndpoint?: string;
}

export function withTelemetryFlags(cmd: Command): Command {
  return withMetricsFlags(cmd).option(
    "--opentelemetry-endpoint <endpoint>",
    "export OpenTelemetry traces over OTLP: host:port for gRPC (a collector's :4317, as upstream) or " +
      "http://host:port for HTTP/protobuf (:4318); off unless given (NSM_OPENTELEMETRYENDPOINT)",
    env("NSM_OPENTELEMETRYENDPOINT"),
  );
}

/** Starts metrics and tracing as the flags ask, before the component itself; resolves with their stop. */
export async function telemetryFrom(
  o: TelemetryFlags,
  serviceName: string,
): Promise<{ stop(): Promise<void> }> {
  const tracing =
    o.opentelemetryEndpoint === undefined || o.opentelemetryEndpoint === ""
      ? undefined
      : await startTracing({ endpoint: o.opentelemetryEndpoint, serviceName });
  const metrics = await metricsFrom(o).catch(async (err: unknown) => {
    await tracing?.stop();
    throw err;
  });
  return {
    async stop() {
      await metrics.stop();
      await tracing?.stop();
    },
  };
}
