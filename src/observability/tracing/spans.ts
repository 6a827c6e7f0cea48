// Spans of a hop, as upstream's gRPC interceptors make them: a server span for each incoming Request/Close
// (child of the caller's span, read from the W3C `traceparent` in the call's metadata), and a client span
// for each outgoing one (its context written into the call's metadata). The NSC's own call is the root.
// The span travels in the CallContext, so the element that calls out (connect) finds its parent there.
import type { Metadata } from "@grpc/grpc-js";
import type { Attributes, Context, Span, TextMapGetter, TextMapSetter } from "@opentelemetry/api";
import type { Connection } from "../../api/connection.js";
import type { CallContext } from "../../core/context.js";
import { toStatusError } from "../../core/errors.js";
import { activeTracing, type TracingRuntime } from "./tracing.js";

const spanKey = Symbol("tracing.span");
// The API's enums, by value: importing them would load the OpenTelemetry API with tracing off.
const spanKind = { internal: 0, server: 1, client: 2 } as const;
const statusError = 2;

const getter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const v = md.get(key);
    return v.length === 0 ? undefined : v.map(String);
  },
};
const setter: TextMapSetter<Metadata> = { set: (md, key, value) => md.set(key, value) };

/** What every NSM span carries: the connection as this hop sees it and its service. */
export function connectionAttributes(conn: Connection | undefined): Attributes {
  if (!conn) return {};
  const path = conn.path;
  return {
    "nsm.connection.id": conn.id,
    "nsm.network_service": conn.networkService,
    ...(conn.networkServiceEndpointName
      ? { "nsm.network_service_endpoint": conn.networkServiceEndpointName }
      : {}),
    ...(path && path.pathSegments.length > 0
      ? { "nsm.path.index": path.index, "nsm.path.id": path.pathSegments[0]!.id }
      : {}),
  };
}

const parentOf = (t: TracingRuntime, ctx: CallContext): Context => {
  const span = ctx.get<Span>(spanKey);
  const base = t.api.context.active();
  return span ? t.api.trace.setSpan(base, span) : base;
};

async function within<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = toStatusError(err);
    span.setStatus({ code: statusError, message: e.details });
    span.setAttribute("rpc.grpc.status_code", e.code);
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Runs an incoming call as a server span (a root span for the NSC's own call, `md` undefined). Without a
 * tracer this is just `fn()`.
 */
export function serverSpan<T>(
  ctx: CallContext,
  method: string,
  conn: Connection | undefined,
  fn: () => Promise<T>,
  opts: { root?: boolean } = {},
): Promise<T> {
  const t = activeTracing();
  if (!t) return fn();
  const base = t.api.context.active();
  const parent = opts.root ? base : t.w3c.extract(base, ctx.metadata, getter);
  const span = t.tracer.startSpan(
    method,
    {
      kind: opts.root ? spanKind.internal : spanKind.server,
      attributes: { "rpc.system": "grpc", ...rpcNames(method), ...connectionAttributes(conn) },
    },
    parent,
  );
  ctx.set(spanKey, span);
  return within(span, fn);
}

/** Runs an outgoing call as a client span, its context written into `md`. */
export function clientSpan<T>(
  ctx: CallContext,
  method: string,
  url: string,
  conn: Connection | undefined,
  md: Metadata,
  fn: () => Promise<T>,
): Promise<T> {
  const t = activeTracing();
  if (!t) return fn();
  const span = t.tracer.startSpan(
    method,
    {
      kind: spanKind.client,
      attributes: {
        "rpc.system": "grpc",
        ...rpcNames(method),
        "server.address": url,
        ...connectionAttributes(conn),
      },
    },
    parentOf(t, ctx),
  );
  t.w3c.inject(t.api.trace.setSpan(t.api.context.active(), span), md, setter);
  return within(span, fn);
}

/** Adds the connection as the hop returns it (its id may be new) to the current span. */
export function annotateSpan(ctx: CallContext, conn: Connection): void {
  ctx.get<Span>(spanKey)?.setAttributes(connectionAttributes(conn));
}

function rpcNames(method: string): Attributes {
  const slash = method.lastIndexOf("/");
  return slash < 0
    ? { "rpc.method": method }
    : { "rpc.service": method.slice(0, slash), "rpc.method": method.slice(slash + 1) };
}
