// OpenTelemetry tracing of a component: off unless an OTLP endpoint is given (`--opentelemetry-endpoint`,
// NSM_OPENTELEMETRYENDPOINT as upstream), and then every hop's Request/Close is a span (see spans.ts).
// Upstream's form `host:port` is OTLP over gRPC (the collector's 4317); `http://host:port` is OTLP/HTTP
// protobuf (4318). Spans are batched; stop() flushes them. The OpenTelemetry packages are loaded only when
// tracing starts (they cost ~80 ms of start-up otherwise), and the provider is not registered globally:
// nsm-ts passes span contexts explicitly, so nothing depends on async-context propagation.
import type * as OtelApi from "@opentelemetry/api";
import type { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";

/** What spans.ts needs while tracing is on. */
export interface TracingRuntime {
  api: typeof OtelApi;
  tracer: OtelApi.Tracer;
  w3c: W3CTraceContextPropagator;
}

let active: TracingRuntime | undefined;

/** The component's tracing while it is on; undefined (and nothing to pay) when it is off. */
export function activeTracing(): TracingRuntime | undefined {
  return active;
}

export interface TracingOptions {
  /** `host:port` (OTLP/gRPC, insecure, as upstream) or `http(s)://host:port[/path]` (OTLP/HTTP protobuf). */
  endpoint: string;
  /** service.name of the spans: the component's name (nsmgr-node-1, forwarder-kernel-…). */
  serviceName: string;
  /** Span export batch delay; short in tests so traces show up quickly. Default 1000 ms. */
  scheduledDelayMs?: number;
}

export interface Tracing {
  /** Flushes pending spans and turns tracing off. */
  stop(): Promise<void>;
}

type Endpoint = { kind: "grpc"; url: string } | { kind: "http"; url: string };

/** Parses the endpoint; throws naming the flag when it is neither form. */
export function parseTracingEndpoint(endpoint: string): Endpoint {
  if (/^https?:\/\//.test(endpoint)) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new Error(`--opentelemetry-endpoint: "${endpoint}" is not a URL`);
    }
    const path = url.pathname === "/" ? "/v1/traces" : url.pathname;
    return { kind: "http", url: `${url.origin}${path}` };
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
    throw new Error(
      `--opentelemetry-endpoint: "${endpoint}" is neither host:port (OTLP/gRPC) nor an http(s):// URL (OTLP/HTTP)`,
    );
  return { kind: "grpc", url: `http://${endpoint}` };
}

async function exporterFor(e: Endpoint): Promise<SpanExporter> {
  if (e.kind === "http") {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
    return new OTLPTraceExporter({ url: e.url });
  }
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-grpc");
  return new OTLPTraceExporter({ url: e.url });
}

export async function startTracing(opts: TracingOptions): Promise<Tracing> {
  if (active) throw new Error("tracing is already on in this process");
  const endpoint = parseTracingEndpoint(opts.endpoint);
  const [api, core, resources, sdk, semconv] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/core"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/semantic-conventions"),
  ]);
  const provider = new sdk.BasicTracerProvider({
    resource: resources.resourceFromAttributes({
      [semconv.ATTR_SERVICE_NAME]: opts.serviceName,
      [semconv.ATTR_SERVICE_VERSION]: "0.1.0",
    }),
    spanProcessors: [
      new sdk.BatchSpanProcessor(await exporterFor(endpoint), {
        scheduledDelayMillis: opts.scheduledDelayMs ?? 1000,
      }),
    ],
  });
  const mine: TracingRuntime = {
    api,
    tracer: provider.getTracer("nsm-ts"),
    w3c: new core.W3CTraceContextPropagator(),
  };
  active = mine;
  return {
    async stop() {
      if (active === mine) active = undefined;
      await provider.shutdown().catch(() => undefined);
    },
  };
}
