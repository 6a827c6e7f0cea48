// Typed data-plane errors: every failure names the errno, the operation, the object and the namespace, so a
// log line like `link add veth nsm-abc (netns /var/run/netns/pod1): EEXIST (file already exists)` says what
// went wrong where, and `.hint` says what to do about it.
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";

/** What an operation was doing when it failed: used to build the error message. */
export interface OpContext {
  /** Operation, e.g. "link add veth", "addr add", "route replace", "netns open". */
  op: string;
  /** The object operated on, e.g. an interface name, a CIDR, a route destination, a path. */
  object: string;
  /** The namespace the operation ran in (path or inode URL), when there is one. */
  netns?: string;
}

const errnoByName: Record<string, number> = osConstants.errno;
const systemErrors = getSystemErrorMap();

/** Positive errno → symbolic name ("EEXIST"); falls back to "ERRNO_<n>" for numbers Node does not know. */
export function errnoName(errno: number): string {
  return systemErrors.get(-Math.abs(errno))?.[0] ?? `ERRNO_${Math.abs(errno)}`;
}

/** Positive errno → the libc-style description ("file already exists"). */
export function errnoMessage(errno: number): string {
  return systemErrors.get(-Math.abs(errno))?.[1] ?? "unknown error";
}

/** Symbolic name → positive errno (EINVAL → 22). */
export function errnoOf(name: string): number {
  const n = errnoByName[name];
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

/** What to do about the common failures; appended to messages so operators need not look errnos up. */
const hints: Record<string, string> = {
  EEXIST: "an object with that name/key already exists: delete it first, pick another name, or use replace",
  ENODEV: "no such interface in that namespace: check the name and that it was not moved or deleted",
  ENOENT: "not found: check the name, prefix or namespace path",
  ESRCH: "no such entry: it was probably removed already",
  EPERM: "needs CAP_NET_ADMIN (run as root) in the namespace's owning user namespace",
  EACCES: "needs CAP_NET_ADMIN / CAP_SYS_ADMIN (run as root)",
  EBUSY: "the object is in use (kernels before 6.2 rename only interfaces that are down)",
  EADDRINUSE: "the address or port is already in use",
  EADDRNOTAVAIL: "the address is not valid here (wrong family, not assigned, or a multicast MAC)",
  ENETUNREACH:
    "the gateway is not reachable through a connected route: add the on-link route first or set onlink",
  EOPNOTSUPP: "the kernel does not support this (missing module or feature)",
  ETIMEDOUT: "the kernel did not answer in time",
  EBADF: "the namespace handle was closed",
};

/**
 * A failed data-plane operation. `errno` is the positive Linux errno, `code` its symbolic name; `op`, `object`
 * and `netns` say what was being done to what, where.
 */
export class DataplaneError extends Error {
  override readonly name = "DataplaneError";
  readonly errno: number;
  readonly code: string;
  readonly op: string;
  readonly object: string;
  readonly netns: string | undefined;
  readonly hint: string | undefined;
  /** Extra detail (e.g. "already on nsm-a"), included in the message. */
  readonly detail: string | undefined;

  constructor(ctx: OpContext, errno: number, opts: { detail?: string; cause?: unknown } = {}) {
    const code = errnoName(errno);
    const where = ctx.netns ? ` (netns ${ctx.netns})` : "";
    const detail = opts.detail ?? errnoMessage(errno);
    const hint = hints[code];
    super(`${ctx.op} ${ctx.object}${where}: ${code} (${detail})${hint ? ` — ${hint}` : ""}`, {
      cause: opts.cause,
    });
    this.errno = Math.abs(errno);
    this.code = code;
    this.op = ctx.op;
    this.object = ctx.object;
    this.netns = ctx.netns;
    this.hint = hint;
    this.detail = detail;
  }

  /** Builds an error from a symbolic code (used for validation done before the kernel is asked). */
  static of(ctx: OpContext, code: string, detail?: string): DataplaneError {
    return new DataplaneError(ctx, errnoOf(code), detail === undefined ? {} : { detail });
  }
}

/** True if `err` is a DataplaneError with one of the given codes (e.g. `isErrno(e, "ENODEV", "ESRCH")`). */
export function isErrno(err: unknown, ...codes: string[]): err is DataplaneError {
  return err instanceof DataplaneError && codes.includes(err.code);
}
