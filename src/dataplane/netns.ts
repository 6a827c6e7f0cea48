// Network namespace references and per-namespace rtnetlink sockets.
//
// A namespace is named by a path (/var/run/netns/X, /proc/<pid>/ns/net, /proc/thread-self/ns/net) or, as NSM
// carries it on the wire, by `inode://<dev>/<ino>` (spec §1.9, §1.10.4), which is resolved by scanning
// /var/run/netns/* then /proc/*/ns/net then /proc/*/task/*/ns/net and stat'ing each.
//
// Opening runs as root on a path that may come from a caller, so a namespace file is opened only if it is a
// regular file, opened non-blocking (a FIFO would block the event loop), and kept only if the kernel says it
// is a network namespace (nsfs, NS_GET_NSTYPE = CLONE_NEWNET). A caller names its namespace by inode:// only
// (checkClientNetnsRef); a path is for this process's own code.
//
// Sockets: an rtnetlink socket talks to the namespace it was created in, forever. To get one for another
// namespace we enter it with setns(2) on the calling thread (Node's main thread), create the socket and go
// back — all synchronously, so no other JavaScript runs while the thread is in the foreign namespace.
import { closeSync, constants as fsConstants, fstatSync, openSync, readdirSync, statSync } from "node:fs";
import { DataplaneError, errnoName, errnoOf, type OpContext } from "./errors.js";
import {
  CLONE_NEWNET,
  NSFS_MAGIC,
  NS_GET_NSTYPE,
  O_CLOEXEC,
  O_NONBLOCK,
  setns,
  unshare,
  sysFstatfsType,
  sysIoctl,
} from "./libc.js";
import { openRtnlSocket, type RtnlSocket, type RtnlSocketOptions } from "./nl/socket.js";

/** Where named namespaces live (`ip netns add X` bind-mounts /var/run/netns/X). */
export const NETNS_RUN_DIR = "/var/run/netns";
/** The calling thread's own namespace. */
export const SELF_NETNS = "/proc/thread-self/ns/net";
/** The host's namespace (that of PID 1, in this process's PID namespace). */
export const HOST_NETNS = "/proc/1/ns/net";

/** inode://<st_dev>/<st_ino> of the namespace file at `path`. */
export function inodeUrlOf(path: string): string {
  const st = statSync(path, { bigint: true });
  return `inode://${st.dev}/${st.ino}`;
}

/** inode://<st_dev>/<st_ino> of an open namespace file descriptor. */
export function inodeUrlOfFd(fd: number): string {
  const st = fstatSync(fd, { bigint: true });
  return `inode://${st.dev}/${st.ino}`;
}

function parseInodeUrl(url: string): { dev: bigint; ino: bigint } | undefined {
  const m = /^inode:\/\/(\d{1,20})\/(\d{1,20})$/.exec(url);
  if (!m?.[1] || !m[2]) return undefined;
  return { dev: BigInt(m[1]), ino: BigInt(m[2]) };
}

/**
 * A namespace reference refused before anything was opened: `denied` when it names a namespace the caller
 * may not use (the host's, the forwarder's own), `invalid` when the reference itself is not acceptable.
 */
export class NetnsRefusedError extends Error {
  override readonly name = "NetnsRefusedError";
  constructor(
    readonly reason: "invalid" | "denied",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The canonical inode:// URL a caller's reference names. Callers (anything received over gRPC) may name a
 * namespace only by inode://<dev>/<ino>; a file:// URL or path only when `trusted` (produced by this
 * process's own code, e.g. for a descriptor it received), then returned as given.
 */
export function checkClientNetnsRef(ref: string, trusted = false): string {
  if (ref.startsWith("inode://")) {
    const id = parseInodeUrl(ref);
    if (!id)
      throw new NetnsRefusedError("invalid", `"${ref}" is not inode://<dev>/<ino> with decimal numbers`);
    return `inode://${id.dev}/${id.ino}`;
  }
  if (!trusted) {
    throw new NetnsRefusedError(
      "invalid",
      `"${ref}" is refused: a namespace is named as inode://<dev>/<ino> (file:// URLs and paths are opened only for this process's own code)`,
    );
  }
  return ref;
}

function* candidatePaths(): Generator<string> {
  let named: string[] = [];
  try {
    named = readdirSync(NETNS_RUN_DIR);
  } catch {
    // no named namespaces on this host
  }
  for (const n of named) yield `${NETNS_RUN_DIR}/${n}`;
  const pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  for (const pid of pids) yield `/proc/${pid}/ns/net`;
  // A thread may sit in another namespace than its process (e.g. Go code that locked an OS thread).
  for (const pid of pids) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) if (tid !== pid) yield `/proc/${pid}/task/${tid}/ns/net`;
  }
}

/**
 * Resolves `inode://dev/ino` to a path that currently refers to that namespace. Throws ENOENT if no named
 * namespace, process or thread holds it.
 */
export function resolveInodeUrl(url: string): string {
  const ctx: OpContext = { op: "netns resolve", object: url };
  const want = parseInodeUrl(url);
  if (!want) throw DataplaneError.of(ctx, "EINVAL", "expected inode://<dev>/<ino> with decimal numbers");
  for (const path of candidatePaths()) {
    try {
      const st = statSync(path, { bigint: true });
      if (st.ino === want.ino && st.dev === want.dev) return path;
    } catch {
      // process exited or no permission: skip
    }
  }
  throw DataplaneError.of(
    ctx,
    "ENOENT",
    `no network namespace with that inode under ${NETNS_RUN_DIR}, /proc/*/ns/net or /proc/*/task/*/ns/net`,
  );
}

/** Turns a namespace reference (path, file:// URL, inode:// URL) into a path. */
export function netnsPathOf(ref: string): string {
  if (ref.startsWith("inode://")) return resolveInodeUrl(ref);
  if (ref.startsWith("file://")) return decodeURIComponent(ref.slice("file://".length));
  return ref;
}

/** An open namespace file: the fd pins the namespace and identifies it (dev/ino) for its whole life. */
export interface NetnsFile {
  /** The reference the caller gave (path or URL), used in messages. */
  readonly label: string;
  readonly path: string;
  readonly fd: number;
  readonly inodeUrl: string;
}

/**
 * Opens the namespace named by `ref`. Throws ENOENT (with the path) if it does not exist, EINVAL if it is not
 * a network namespace (checked before and after opening, which never blocks).
 */
export function openNetnsFile(ref: string): NetnsFile {
  const path = netnsPathOf(ref);
  const ctx: OpContext = { op: "netns open", object: ref };
  const fail = (err: unknown): DataplaneError => {
    const code = (err as NodeJS.ErrnoException).code ?? "EIO";
    return DataplaneError.of(
      ctx,
      code in { ENOENT: 1, EACCES: 1, ENOTDIR: 1, EPERM: 1, ELOOP: 1 } ? code : "EIO",
      code === "ENOENT" ? `no such namespace file ${path}` : (err as Error).message,
    );
  };
  // A FIFO, device or socket is refused unopened: opening some devices does things (a watchdog starts).
  try {
    if (!statSync(path).isFile()) throw DataplaneError.of(ctx, "EINVAL", `${path} is not a namespace file`);
  } catch (err) {
    throw err instanceof DataplaneError ? err : fail(err);
  }
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  } catch (err) {
    throw fail(err);
  }
  try {
    checkNetnsFd(fd, ctx, path);
    const inodeUrl = inodeUrlOfFd(fd);
    // The path was found by scanning: make sure it still is the namespace asked for.
    const want = parseInodeUrl(ref);
    if (want && `inode://${want.dev}/${want.ino}` !== inodeUrl)
      throw DataplaneError.of(ctx, "ENOENT", `${path} changed while it was opened (now ${inodeUrl})`);
    return { label: ref, path, fd, inodeUrl };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Throws EINVAL unless `fd` is a network namespace: on nsfs, and (Linux ≥ 4.11) of type CLONE_NEWNET. */
function checkNetnsFd(fd: number, ctx: OpContext, path: string): void {
  const fsType = sysFstatfsType(fd);
  if (fsType < 0) throw new DataplaneError(ctx, -fsType);
  if (fsType !== NSFS_MAGIC)
    throw DataplaneError.of(
      ctx,
      "EINVAL",
      `${path} is not a namespace file (filesystem 0x${fsType.toString(16)})`,
    );
  const type = sysIoctl(fd, NS_GET_NSTYPE);
  // ENOTTY/EINVAL: a kernel without NS_GET_NSTYPE; nsfs is then the best proof there is.
  if (type < 0 && !["ENOTTY", "EINVAL"].includes(errnoName(-type))) throw new DataplaneError(ctx, -type);
  if (type >= 0 && type !== CLONE_NEWNET)
    throw DataplaneError.of(
      ctx,
      "EINVAL",
      `${path} is a namespace of another kind (0x${type.toString(16)}), not a network namespace`,
    );
}

/** Moves the calling thread back into the namespace open at `orig`; throws if it cannot. */
function returnTo(orig: number, ctx: OpContext): void {
  const back = setns(orig, CLONE_NEWNET);
  if (back === 0) return;
  // The main thread is stranded in a foreign namespace: nothing this process does can be trusted now.
  process.emitWarning(`dataplane: cannot return to the original network namespace (errno ${back})`);
  throw new DataplaneError({ ...ctx, op: "netns leave" }, back, {
    detail: "cannot return to the original network namespace; restart the process",
  });
}

/**
 * Runs `fn` with the calling thread inside the namespace open at `fd`, then returns to the original
 * namespace. `fn` must be synchronous: nothing else may run on this thread meanwhile.
 */
export function inNetns<T>(fd: number, ctx: OpContext, fn: () => T): T {
  const orig = openSync(SELF_NETNS, "r");
  try {
    // Already there (a pod's NSC pinging over its own interface): setns needs CAP_SYS_ADMIN, which an
    // unprivileged container lacks, and would change nothing.
    const [target, self] = [fstatSync(fd), fstatSync(orig)];
    if (target.ino === self.ino && target.dev === self.dev) return fn();
    const e = setns(fd, CLONE_NEWNET);
    if (e !== 0) {
      throw new DataplaneError(
        ctx,
        e,
        e === errnoOf("EINVAL") ? { detail: "not a network namespace file" } : {},
      );
    }
    try {
      return fn();
    } finally {
      returnTo(orig, ctx);
    }
  } finally {
    closeSync(orig);
  }
}

/** Opens an rtnetlink socket inside the namespace open at `file.fd`. */
export function openRtnlSocketIn(file: NetnsFile, opts: RtnlSocketOptions = {}): RtnlSocket {
  return inNetns(file.fd, { op: "netns open socket", object: file.label }, () => openRtnlSocket(opts));
}

/** Every network namespace on the host that a name, process or thread holds: one path each (by inode). */
export function listNamespaces(): { path: string; inodeUrl: string }[] {
  const seen = new Map<string, string>();
  for (const path of candidatePaths()) {
    try {
      const st = statSync(path, { bigint: true });
      const url = `inode://${st.dev}/${st.ino}`;
      if (!seen.has(url)) seen.set(url, path);
    } catch {
      // the process exited while we looked
    }
  }
  return [...seen].map(([inodeUrl, path]) => ({ path, inodeUrl }));
}

/**
 * A new, empty network namespace, held only by the returned file: it and every interface in it go when the
 * file is closed (or the process dies), so nothing outlives its owner. unshare(2) on this thread, open, and
 * straight back: `fn`-less and synchronous like inNetns, so nothing else runs meanwhile.
 */
export function unshareNetnsFile(): NetnsFile {
  const ctx: OpContext = { op: "netns new", object: "anonymous" };
  const orig = openSync(SELF_NETNS, "r");
  try {
    const e = unshare(CLONE_NEWNET);
    if (e !== 0) throw new DataplaneError(ctx, e);
    try {
      return openNetnsFile(SELF_NETNS);
    } finally {
      returnTo(orig, ctx);
    }
  } finally {
    closeSync(orig);
  }
}
