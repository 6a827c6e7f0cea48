// A small promise-based gRPC client over the generated service definitions: unary calls resolve with the
// response (and response headers), server streams are async iterables that can be cancelled. Every call has
// a deadline unless it is a watch.
import * as grpc from "@grpc/grpc-js";
import { FdChannelCredentials } from "./fdpass/channel.js";
import type { FdTransceiver } from "./fdpass/socket.js";
import { defaultChannelOptions, dialTarget } from "./grpc.js";

export interface MethodDefinition<Req, Res> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (v: Req) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}

export interface CallOptions {
  /** Milliseconds until the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  metadata?: grpc.Metadata;
  signal?: AbortSignal;
}

export interface UnaryResult<Res> {
  response: Res;
  headers: grpc.Metadata;
}

export interface ServerStream<Res> extends AsyncIterable<Res> {
  headers: Promise<grpc.Metadata>;
  cancel(): void;
}

export const defaultTimeoutMs = 15_000;

export class GrpcClient {
  readonly raw: grpc.Client;
  /** Descriptor passing on this channel's connection: unix targets only (upstream grpcfd). */
  readonly fds: FdTransceiver | undefined;

  constructor(
    readonly url: string,
    options: grpc.ChannelOptions = {},
    credentials?: grpc.ChannelCredentials,
  ) {
    const target = dialTarget(url);
    let creds = credentials ?? target.credentials;
    if (url.startsWith("unix://")) {
      const fd = new FdChannelCredentials(creds);
      this.fds = fd;
      creds = fd;
    }
    this.raw = new grpc.Client(target.target, creds, {
      ...defaultChannelOptions,
      ...options,
    });
  }

  unary<Req, Res>(
    def: MethodDefinition<Req, Res>,
    request: Req,
    opts: CallOptions = {},
  ): Promise<UnaryResult<Res>> {
    return new Promise((resolve, reject) => {
      let headers = new grpc.Metadata();
      // The listener goes when the call ends: long-lived signals must not collect finished calls.
      const onAbort = (): void => call.cancel();
      const call = this.raw.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        request,
        opts.metadata ?? new grpc.Metadata(),
        { deadline: Date.now() + (opts.timeoutMs ?? defaultTimeoutMs) },
        (err, response) => {
          opts.signal?.removeEventListener("abort", onAbort);
          if (err) reject(err);
          else resolve({ response: response as Res, headers });
        },
      );
      call.on("metadata", (md) => (headers = md));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Server-streaming call. `timeoutMs` undefined means no deadline (watches). */
  serverStream<Req, Res>(
    def: MethodDefinition<Req, Res>,
    request: Req,
    opts: CallOptions = {},
  ): ServerStream<Res> {
    const call = this.raw.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      request,
      opts.metadata ?? new grpc.Metadata(),
      opts.timeoutMs === undefined ? {} : { deadline: Date.now() + opts.timeoutMs },
    );
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const headers = new Promise<grpc.Metadata>((resolve) => {
      call.once("metadata", resolve);
      call.once("status", () => {
        opts.signal?.removeEventListener("abort", onAbort);
        resolve(new grpc.Metadata());
      });
    });
    return {
      headers,
      cancel: () => call.cancel(),
      [Symbol.asyncIterator]: () => (call as AsyncIterable<Res>)[Symbol.asyncIterator](),
    };
  }

  /** Whether the channel has a live connection now (a failed call with none never reached the peer). */
  isReady(): boolean {
    return this.raw.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
  }

  /** Resolves when the channel is connected, or rejects at the deadline. */
  waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.raw.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())),
    );
  }

  close(): void {
    this.raw.close();
  }
}

/** Reads a finite server stream to the end. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}
