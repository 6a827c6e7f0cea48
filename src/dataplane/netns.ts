// Network namespace references and per-namespace rtnetlink sockets.
//
// A namespace is named by a path (/var/run/netns/X, /proc/<pid>/ns/net, /proc/thread-self/ns/net) or, as NSM
// carries it on the wire, by `inode://<dev>/<ino>` (spec §1.9, §1.10.4), which is resolved by scanning
// /var/run/netns/* then /proc/*/ns/net then /proc/*/task/*/ns/net and stat'ing each.
//
// Sockets: an rtnetlink socket talks to the namespace it was created in, forever. To get one for another
// namespace we enter it with setns(2) on the calling thread (Node's main thread), create the socket and go
// back — all synchronously, so no other JavaScript runs while the thread is in the foreign namespace.
import { closeSync, fstatSync, openSync, readdirSync, statSync } from "node:fs";
import { DataplaneError, errnoOf, type OpContext } from "./errors.js";
import { CLONE_NEWNET, setns } from "./libc.js";
import { openRtnlSocket, type RtnlSocket, type RtnlSocketOptions } from "./nl/socket.js";

/** Where named namespaces live (`ip netns add X` bind-mounts /var/run/netns/X). */
export const NETNS_RUN_DIR = "/var/run/netns";
/** The calling thread's own namespace. */
export const SELF_NETNS = "/proc/thread-self/ns/net";

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
  const m = /^inode:\/\/(\d+)\/(\d+)$/.exec(url);
  if (!m?.[1] || !m[2]) return undefined;
  return { dev: BigInt(m[1]), ino: BigInt(m[2]) };
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

/** Opens the namespace named by `ref`. Throws ENOENT (with the path) if it does not exist. */
export function openNetnsFile(ref: string): NetnsFile {
  const path = netnsPathOf(ref);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "EIO";
    const ctx: OpContext = { op: "netns open", object: ref };
    throw DataplaneError.of(
      ctx,
      code in { ENOENT: 1, EACCES: 1, ENOTDIR: 1, EPERM: 1 } ? code : "EIO",
      code === "ENOENT" ? `no such namespace file ${path}` : (err as Error).message,
    );
  }
  return { label: ref, path, fd, inodeUrl: inodeUrlOfFd(fd) };
}

/**
 * Runs `fn` with the calling thread inside the namespace open at `fd`, then returns to the original
 * namespace. `fn` must be synchronous: nothing else may run on this thread meanwhile.
 */
export function inNetns<T>(fd: number, ctx: OpContext, fn: () => T): T {
  const orig = openSync(SELF_NETNS, "r");
  try {
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
      const back = setns(orig, CLONE_NEWNET);
      if (back !== 0) {
        // The main thread is stranded in a foreign namespace: nothing this process does can be trusted now.
        process.emitWarning(`dataplane: cannot return to the original network namespace (errno ${back})`);
        // eslint-disable-next-line no-unsafe-finally
        throw new DataplaneError({ ...ctx, op: "netns leave" }, back, {
          detail: "cannot return to the original network namespace; restart the process",
        });
      }
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
