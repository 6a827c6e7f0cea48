// Adapters from grpc-js handlers to chain calls: each call gets a CallContext (request-id logger, abort
// signal, metadata, deadline); thrown errors become gRPC statuses; response headers set by elements are sent
// before the response or the first streamed message.
import {
  status,
  type Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { CallContext, requestId } from "./context.js";
import { connectionKeyHeader, fdTransceiverOf } from "./fdpass/server.js";
import { toStatusError } from "./errors.js";
import type { Logger } from "./log.js";

// A watcher that stops reading must not make the server buffer without bound.
const maxBufferedBytes = 16 * 1024 * 1024;

interface Call {
  metadata: Metadata;
  getDeadline(): Date | number;
  getAuthContext?: () => { sslPeerCertificate?: { raw?: Buffer } } | null;
}

function contextFor(log: Logger, method: string, call: Call, signal: AbortSignal): CallContext {
  const deadline = call.getDeadline();
  const d = deadline instanceof Date ? deadline : Number.isFinite(deadline) ? new Date(deadline) : undefined;
  const ctx = new CallContext(
    log.child({ reqId: requestId(call.metadata), method }),
    signal,
    call.metadata,
    d,
  );
  ctx.peerCertificate = call.getAuthContext?.()?.sslPeerCertificate?.raw;
  // Calls on our unix connections carry their connection's key (src/core/fdpass/server.ts).
  ctx.fds = fdTransceiverOf(call.metadata.get(connectionKeyHeader)[0]);
  call.metadata.remove(connectionKeyHeader);
  return ctx;
}

function hasHeaders(md: Metadata): boolean {
  return Object.keys(md.getMap()).length > 0;
}

export function unaryHandler<Req, Res>(
  log: Logger,
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    // grpc-js also reports "cancelled" when the stream closes after a successful reply: only a cancel
    // before we answered means the client gave up.
    const abort = new AbortController();
    let answered = false;
    call.once("cancelled", () => answered || abort.abort());
    const ctx = contextFor(log, method, call, abort.signal);
    invoke(() => fn(call.request, ctx)).then(
      (res) => {
        answered = true;
        if (hasHeaders(ctx.responseHeaders)) call.sendMetadata(ctx.responseHeaders);
        callback(null, res);
      },
      (err: unknown) => {
        answered = true;
        const e = toStatusError(err);
        (e.code === status.INTERNAL ? ctx.log.error.bind(ctx.log) : ctx.log.info.bind(ctx.log))(
          { code: status[e.code], err: e.details },
          "call failed",
        );
        callback(e);
      },
    );
  };
}

export interface StreamSink<Res> {
  send(res: Res | Uint8Array): void;
}

export function serverStreamHandler<Req, Res>(
  log: Logger,
  method: string,
  fn: (req: Req, ctx: CallContext, sink: StreamSink<Res>) => Promise<void>,
): (call: ServerWritableStream<Req, Res>) => void {
  return (call) => {
    const abort = new AbortController();
    let answered = false;
    const gone = (): void => {
      if (!answered) abort.abort();
    };
    call.once("cancelled", gone);
    call.once("close", gone);
    const ctx = contextFor(log, method, call, abort.signal);
    let headersSent = false;
    const flushHeaders = (): void => {
      if (headersSent) return;
      headersSent = true;
      if (hasHeaders(ctx.responseHeaders)) call.sendMetadata(ctx.responseHeaders);
    };
    const sink: StreamSink<Res> = {
      send: (res) => {
        if (abort.signal.aborted) return;
        flushHeaders();
        if (call.writableLength > maxBufferedBytes) {
          ctx.log.warn("stream reader too slow, closing it");
          abort.abort();
          call.emit("error", {
            code: status.RESOURCE_EXHAUSTED,
            details: "watch stream reader too slow; re-subscribe",
          });
          return;
        }
        call.write(res as Res);
      },
    };
    invoke(() => fn(call.request, ctx, sink)).then(
      () => {
        if (abort.signal.aborted) return;
        answered = true;
        flushHeaders();
        call.end();
      },
      (err: unknown) => {
        if (abort.signal.aborted) return;
        answered = true;
        const e = toStatusError(err);
        ctx.log.info({ code: status[e.code], err: e.details }, "stream failed");
        call.emit("error", { code: e.code, details: e.details });
      },
    );
  };
}

/** Runs `fn`, turning a synchronous throw (e.g. validation) into a rejection. */
async function invoke<T>(fn: () => Promise<T>): Promise<T> {
  return fn();
}

/** Wraps a generated serializer so that pre-encoded messages (fan-out) are sent without re-encoding. */
export function passEncoded<T>(serialize: (v: T) => Buffer): (v: T | Uint8Array) => Buffer {
  return (v) => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : serialize(v));
}
