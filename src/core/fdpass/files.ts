// Descriptors as NSM URLs name them: inode://<dev>/<ino> on the wire, file:// (or unix://) /proc/<pid>/fd/<n>
// inside the process that holds the descriptor (upstream grpcfd and sdk sendfd/recvfd).
import { closeSync, fstatSync } from "node:fs";
import { fdpass } from "./native.js";

/** inode://<dev>/<ino> of an open descriptor, as grpcfd names it. */
export function inodeUrlOfFd(fd: number): string {
  const st = fstatSync(fd, { bigint: true });
  return `inode://${st.dev}/${st.ino}`;
}

/** An independent close-on-exec copy of `fd`. */
export function dupFd(fd: number): number {
  const c = fdpass().dup(fd);
  if (c < 0) throw new Error(`cannot copy descriptor ${fd} (errno ${-c})`);
  return c;
}

export const inodeUrlPattern = /^inode:\/\/\d{1,20}\/\d{1,20}$/;

/**
 * Opens `path` to send it (O_PATH, as grpcfd does: no read access needed, works for sockets too); returns the
 * descriptor and the inode URL that names it. The caller closes the descriptor.
 */
export function openToSend(path: string): { fd: number; inodeUrl: string } {
  const fd = fdpass().openPath(path);
  if (fd < 0) throw new Error(`cannot open ${path} to pass it (errno ${-fd})`);
  try {
    return { fd, inodeUrl: inodeUrlOfFd(fd) };
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** The path through which this process reaches a descriptor it holds. */
export function procFdPath(fd: number): string {
  return `/proc/${process.pid}/fd/${fd}`;
}

export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
}
