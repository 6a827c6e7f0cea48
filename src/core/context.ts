// Per-call context handed to every chain element: logger (with request id), cancellation, incoming metadata,
// and typed per-call values that elements use to talk to each other (e.g. the registry path).
import { randomUUID } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import type { FdTransceiver } from "./fdpass/socket.js";
import type { Logger } from "./log.js";

/**
 * State an element keeps for one connection across Request, refresh and Close (upstream `metadata`): one
 * map for the hop's server side and one for its client side. `begin` creates it with the connection and
 * drops it when the connection closes.
 */
export class ConnectionMetadata {
  readonly server = new Map<symbol, unknown>();
  readonly client = new Map<symbol, unknown>();
}

export class CallContext {
  readonly values = new Map<symbol, unknown>();
  /** Raised inside this process (timeout, refresh, heal), not received from a caller: nothing to authorize. */
  internal = false;
  /** DER of the caller's TLS certificate (mTLS only): who is calling, for token policies. */
  peerCertificate?: Buffer;
  /** The caller's connection when it passes file descriptors (a unix socket; upstream grpcfd). */
  fds?: FdTransceiver;
  /** Per-connection state, set by `begin`; undefined outside a connection's events. */
  connection?: ConnectionMetadata;
  /** Metadata to send back as response headers (e.g. the registry `path`). */
  readonly responseHeaders = new Metadata();

  constructor(
    readonly log: Logger,
    readonly signal: AbortSignal,
    readonly metadata: Metadata = new Metadata(),
    readonly deadline?: Date,
  ) {}

  get<T>(key: symbol): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  set<T>(key: symbol, value: T): void {
    this.values.set(key, value);
  }

  /** The per-connection map of the server (`client=false`) or client side; throws outside `begin`. */
  connMeta(client = false): Map<symbol, unknown> {
    if (!this.connection) throw new Error("per-connection metadata used outside begin");
    return client ? this.connection.client : this.connection.server;
  }

  /** A context for work that is not tied to a client call (timers, expiry, background tasks). */
  static background(log: Logger): CallContext {
    const ctx = new CallContext(log, new AbortController().signal);
    ctx.internal = true;
    return ctx;
  }
}

/** Request id: taken from the caller's `x-request-id` metadata when present, else minted. */
export function requestId(md: Metadata): string {
  const v = md.get("x-request-id")[0];
  return typeof v === "string" && v.length > 0 && v.length <= 128 ? v : randomUUID().slice(0, 8);
}
