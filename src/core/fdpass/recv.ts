// Waiting for a passed descriptor as upstream's recvfd does: until the call's deadline (or its cancel), then
// DEADLINE_EXCEEDED with upstream's `timeout in recvfd waiting for inode://…`.
import { status } from "@grpc/grpc-js";
import type { CallContext } from "../context.js";
import { StatusError } from "../errors.js";
import type { FdTransceiver } from "./socket.js";

// Without a deadline on the call, as long as upstream's default request timeout.
const defaultWaitMs = 15_000;

/** The descriptor for `inodeUrl` on `fds`; `field` (if any) prefixes the error, naming what asked for it. */
export async function recvFdForCall(
  fds: FdTransceiver,
  inodeUrl: string,
  ctx: CallContext,
  field?: string,
): Promise<number> {
  const left = ctx.deadline ? ctx.deadline.getTime() - Date.now() : defaultWaitMs;
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(Math.max(0, left))]);
  try {
    return await fds.recvFd(inodeUrl, signal);
  } catch (err) {
    const msg = (err as Error).message;
    throw new StatusError(status.DEADLINE_EXCEEDED, field ? `${field}: ${msg}` : msg);
  }
}
