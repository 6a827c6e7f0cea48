// Test support: a private Jaeger v2 (the `jaeger` binary scripts/build-jaeger.sh builds, an OpenTelemetry
// Collector distribution) with in-memory storage. Everything it listens on is on 127.0.0.1 at free ports: the OTLP
// receivers (HTTP and gRPC) and the query service (HTTP API and gRPC); its own telemetry (metrics on :8888) is
// off and no other extension (health check, pprof, zpages, remote sampling) is configured, so parallel runs
// never collide. Its YAML config lives in a temp directory; stop() kills its process group and removes the
// directory (also done if the test process exits, or dies of SIGINT/SIGTERM/SIGHUP, without calling stop()).
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { stringify } from "yaml";
import { freePorts, sleep, spawnBackend, untilReady, withPortRetry } from "./backend.js";

/** The Go module version scripts/build-jaeger.sh builds (Jaeger v2's `cmd/jaeger`). */
export const jaegerModuleVersion = "v1.75.0";

/** Where scripts/build-jaeger.sh puts the binary: $NSM_JAEGER_BIN_DIR/jaeger, else <repo>/.cache/jaeger/bin/jaeger. */
export function jaegerBinary(): string {
  const dir = process.env.NSM_JAEGER_BIN_DIR ?? new URL("../../.cache/jaeger/bin", import.meta.url).pathname;
  return join(dir, "jaeger");
}

/** A tag, log field or process tag in Jaeger's JSON model (the query service's /api/traces). */
export interface JaegerKeyValue {
  key: string;
  type: "string" | "bool" | "int64" | "float64" | "binary";
  value: string | number | boolean;
}

export interface JaegerReference {
  refType: "CHILD_OF" | "FOLLOWS_FROM";
  traceID: string;
  spanID: string;
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: JaegerReference[];
  /** Microseconds since the epoch. */
  startTime: number;
  /** Microseconds. */
  duration: number;
  tags: JaegerKeyValue[];
  logs: Array<{ timestamp: number; fields: JaegerKeyValue[] }>;
  /** Key into JaegerTrace.processes. */
  processID: string;
  warnings: string[] | null;
}

export interface JaegerProcess {
  serviceName: string;
  tags: JaegerKeyValue[];
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, JaegerProcess>;
  warnings: string[] | null;
}

export interface JaegerTraceQuery {
  /** Only traces with a span of this operation (span name). */
  operation?: string;
  /** Only traces with a span carrying all these tags. */
  tags?: Record<string, string>;
  /** How far back to look; default "1h". */
  lookback?: string;
  /** Most traces returned; default 100. */
  limit?: number;
}

export interface JaegerOptions {
  /** How long to wait for Jaeger to be ready; default 30 s. */
  timeoutMs?: number;
}

export interface Jaeger {
  /** Base URL of the OTLP/HTTP receiver; traces go to `${otlpHttpUrl}/v1/traces`. */
  readonly otlpHttpUrl: string;
  /** URL of the OTLP/gRPC receiver, e.g. http://127.0.0.1:40123. */
  readonly otlpGrpcUrl: string;
  /** Base URL of the query service's HTTP API (/api/services, /api/traces, …). */
  readonly queryUrl: string;
  /** `host:port` of the query service's gRPC API (api_v2 / api_v3). */
  readonly queryGrpcAddr: string;
  /** Service names Jaeger has seen spans of. */
  services(): Promise<string[]>;
  /** Traces of `service` from the query API (/api/traces); throws with Jaeger's error text on failure. */
  traces(service: string, opts?: JaegerTraceQuery): Promise<JaegerTrace[]>;
  /** One trace by id (hex). */
  trace(traceId: string): Promise<JaegerTrace>;
  /** Repeats `traces(service, opts)` until `pred` holds; resolves with that result. Default 15 s. */
  waitForTraces(
    service: string,
    pred: (traces: JaegerTrace[]) => boolean,
    timeoutMs?: number,
    opts?: JaegerTraceQuery,
  ): Promise<JaegerTrace[]>;
  /** The last lines Jaeger logged, for failure messages. */
  logs(): string;
  /** Kills the process group and removes the temp directory. Safe to call more than once. */
  stop(): Promise<void>;
}

interface JaegerResponse<T> {
  data: T | null;
  errors: Array<{ code: number; msg: string }> | null;
}

/** The collector-style config: OTLP in, memory storage, query service; nothing else listens. */
function jaegerConfig(p: {
  otlpHttp: number;
  otlpGrpc: number;
  queryHttp: number;
  queryGrpc: number;
}): string {
  return stringify({
    service: {
      extensions: ["jaeger_storage", "jaeger_query"],
      pipelines: {
        // No batch processor: a span is stored as soon as it is received, so tests need not wait for a flush.
        traces: { receivers: ["otlp"], exporters: ["jaeger_storage_exporter"] },
      },
      telemetry: {
        // "none" turns off the collector's own Prometheus endpoint (default localhost:8888).
        metrics: { level: "none" },
        logs: { level: "info", encoding: "console" },
      },
    },
    extensions: {
      jaeger_storage: { backends: { memstore: { memory: { max_traces: 100_000 } } } },
      jaeger_query: {
        storage: { traces: "memstore" },
        // On by default in Jaeger v2: it would trace its own queries to an OTLP collector on localhost:4317.
        enable_tracing: false,
        http: { endpoint: `127.0.0.1:${p.queryHttp}` },
        grpc: { endpoint: `127.0.0.1:${p.queryGrpc}` },
      },
    },
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: `127.0.0.1:${p.otlpGrpc}` },
          http: { endpoint: `127.0.0.1:${p.otlpHttp}` },
        },
      },
    },
    exporters: { jaeger_storage_exporter: { trace_storage: "memstore" } },
  });
}

/** Starts Jaeger; resolves once its query API answers and its OTLP/HTTP receiver accepts connections. */
export async function startJaeger(opts: JaegerOptions = {}): Promise<Jaeger> {
  const bin = jaegerBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `no Jaeger binary at ${bin}: run scripts/build-jaeger.sh (builds Jaeger from the Go module proxy)`,
    );
  }
  const timeoutMs = opts.timeoutMs ?? 30_000;
  // A free port can be taken between our probe and Jaeger's bind (parallel runs): retry with other ones.
  return withPortRetry(async () => startOnce(bin, timeoutMs));
}

async function startOnce(bin: string, timeoutMs: number): Promise<Jaeger> {
  const [otlpHttp, otlpGrpc, queryHttp, queryGrpc] = (await freePorts(4)) as [number, number, number, number];
  const ports = { otlpHttp, otlpGrpc, queryHttp, queryGrpc };
  const dir = mkdtempSync(join(tmpdir(), "nsm-ts-jaeger-"));
  const configFile = join(dir, "jaeger.yaml");
  writeFileSync(configFile, jaegerConfig(ports));

  const proc = spawnBackend(bin, ["--config", configFile], dir);
  const { logs, stop } = proc;

  const queryUrl = `http://127.0.0.1:${ports.queryHttp}`;
  const otlpHttpUrl = `http://127.0.0.1:${ports.otlpHttp}`;

  /** GET a query API path; Jaeger answers `data: null` for an empty list. */
  async function api<T>(path: string): Promise<T | null> {
    const res = await fetch(`${queryUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    let body: JaegerResponse<T>;
    try {
      body = JSON.parse(text) as JaegerResponse<T>;
    } catch {
      throw new Error(`Jaeger ${path}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    }
    if (!res.ok || (body.errors && body.errors.length > 0)) {
      const why = body.errors?.map((e) => `${e.code} ${e.msg}`).join("; ") ?? text.slice(0, 500);
      throw new Error(`Jaeger ${path}: HTTP ${res.status}: ${why}`);
    }
    return body.data;
  }

  const traces = (service: string, q: JaegerTraceQuery = {}): Promise<JaegerTrace[]> => {
    const params = new URLSearchParams({
      service,
      lookback: q.lookback ?? "1h",
      limit: String(q.limit ?? 100),
    });
    if (q.operation !== undefined) params.set("operation", q.operation);
    if (q.tags !== undefined) params.set("tags", JSON.stringify(q.tags));
    return api<JaegerTrace[]>(`/api/traces?${params.toString()}`).then((d) => d ?? []);
  };

  const jaeger: Jaeger = {
    otlpHttpUrl,
    otlpGrpcUrl: `http://127.0.0.1:${ports.otlpGrpc}`,
    queryUrl,
    queryGrpcAddr: `127.0.0.1:${ports.queryGrpc}`,
    services: () => api<string[]>("/api/services").then((d) => d ?? []),
    traces,
    async trace(traceId) {
      const found = await api<JaegerTrace[]>(`/api/traces/${encodeURIComponent(traceId)}`);
      const t = found?.[0];
      if (!t) throw new Error(`Jaeger: no trace ${traceId}`);
      return t;
    },
    async waitForTraces(service, pred, waitMs = 15_000, q = {}) {
      const deadline = Date.now() + waitMs;
      let last = "no answer yet";
      for (;;) {
        try {
          const r = await traces(service, q);
          if (pred(r)) return r;
          last = `last result: ${r.length} trace(s) ${JSON.stringify(r).slice(0, 2_000)}`;
        } catch (e) {
          // A service Jaeger has not seen yet is an empty answer in v2, an error in some versions: keep polling.
          last = (e as Error).message;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `Jaeger: traces of ${service} did not satisfy the predicate within ${waitMs} ms (${last})\n${logs()}`,
          );
        }
        await sleep(200);
      }
    },
    logs,
    stop,
  };

  // The query API answers JSON; the OTLP/HTTP receiver answers any request (405 to a GET) once it listens.
  await untilReady(proc, "jaeger", timeoutMs, async () => {
    const queryUp = await jaeger.services().then(
      () => true,
      () => false,
    );
    return (
      queryUp &&
      fetch(`${otlpHttpUrl}/v1/traces`, { signal: AbortSignal.timeout(2_000) }).then(
        () => true,
        () => false,
      )
    );
  });
  return jaeger;
}
