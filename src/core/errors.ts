// gRPC status errors. Every error a server returns is one of these, so clients always get a code and a
// message that names what was wrong.
import { Metadata, status } from "@grpc/grpc-js";

export class StatusError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata = new Metadata();
  constructor(code: status, details: string) {
    super(details);
    this.name = `StatusError(${status[code]})`;
    this.code = code;
    this.details = details;
  }
}

export const invalidArgument = (field: string, problem: string): StatusError =>
  new StatusError(status.INVALID_ARGUMENT, `${field}: ${problem}`);
export const notFound = (what: string): StatusError => new StatusError(status.NOT_FOUND, what);
export const permissionDenied = (why: string): StatusError => new StatusError(status.PERMISSION_DENIED, why);
export const unauthenticated = (why: string): StatusError => new StatusError(status.UNAUTHENTICATED, why);
export const unavailable = (why: string): StatusError => new StatusError(status.UNAVAILABLE, why);

/** Anything thrown inside a handler becomes a StatusError; unknown errors become INTERNAL with their message. */
export function toStatusError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  if (isServiceError(err)) return new StatusError(err.code, err.details);
  const message = err instanceof Error ? err.message : String(err);
  return new StatusError(status.INTERNAL, message);
}

export function isServiceError(err: unknown): err is { code: status; details: string; message: string } {
  return (
    typeof err === "object" &&
    err !== null &&
    "code" in err &&
    typeof err.code === "number" &&
    "details" in err
  );
}
