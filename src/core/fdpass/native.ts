// The fdpass addon (native/fdpass.c, compiled by scripts/build.mjs at install): recvmsg/sendmsg with
// SCM_RIGHTS and event-loop readiness for a unix socket descriptor, which Node's net.Socket cannot give.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** An opaque uv_poll watcher. */
export type Watcher = object & { readonly __watcher: unique symbol };

export interface FdPassAddon {
  /** Starts a watcher for `fd`; `cb` runs on readiness for the events set with setEvents. */
  watch(fd: number, cb: (status: number, readable: boolean, writable: boolean) => void): Watcher;
  setEvents(w: Watcher, readable: boolean, writable: boolean): void;
  unwatch(w: Watcher): void;
  /** recvmsg: [bytes read (0 = EOF) or -errno, descriptors that came with them]. */
  recv(fd: number, buf: Buffer): [number, number[]];
  /** sendmsg with `fds` as SCM_RIGHTS: bytes written or -errno. */
  send(fd: number, buf: Buffer, fds: number[]): number;
  /** open(path, O_PATH | O_CLOEXEC): a descriptor or -errno. */
  openPath(path: string): number;
  /** fcntl(F_DUPFD_CLOEXEC): a descriptor or -errno. */
  dup(fd: number): number;
  /** shutdown(SHUT_WR): 0 or -errno. */
  shutdownWrite(fd: number): number;
}

const addonPath = fileURLToPath(new URL("../../../native/build/fdpass.node", import.meta.url));
let addon: FdPassAddon | undefined;

/** The addon, loaded on first use; throws with what to run when it was not built. */
export function fdpass(): FdPassAddon {
  if (addon) return addon;
  if (!existsSync(addonPath))
    throw new Error(`${addonPath} is missing: run \`npm run build\` (it compiles native/fdpass.c with cc)`);
  addon = createRequire(import.meta.url)(addonPath) as FdPassAddon;
  return addon;
}

export const EAGAIN = 11;
