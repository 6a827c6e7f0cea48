// Per-call context handed to every chain element: logger (with request id), cancellation, incoming metadata,
// and typed per-call values that elements use to talk to each other (e.g. the registry path).
import { randomUUID } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import type { Logger } from "./log.js";

export class CallContext {
  readonly values = new Map<symbol, unknown>();
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

  /** A context for work that is not tied to a client call (timers, expiry, background tasks). */
  static background(log: Logger): CallContext {
    return new CallContext(log, new AbortController().signal);
  }
}

/** Request id: taken from the caller's `x-request-id` metadata when present, else minted. */
export function requestId(md: Metadata): string {
  const v = md.get("x-request-id")[0];
  return typeof v === "string" && v.length > 0 && v.length <= 128 ? v : randomUUID().slice(0, 8);
}
