// The one libc call Node does not offer: setns(2), through koffi. Used only to open an rtnetlink socket
// inside another network namespace (enter, create socket, leave — synchronously on the calling thread).
// unshare(2) is not needed: namespaces are made by whoever owns the pod (tests use `ip netns add`).
import koffi from "koffi";

/** CLONE_NEWNET from linux/sched.h: setns() must join a network namespace. */
export const CLONE_NEWNET = 0x40000000;

type SetnsFn = (fd: number, nstype: number) => number;

let setnsFn: SetnsFn | undefined;

function loadSetns(): SetnsFn {
  if (!setnsFn) {
    const libc = koffi.load("libc.so.6");
    const fn = libc.func("int setns(int fd, int nstype)");
    setnsFn = (fd, nstype) => {
      const r: unknown = fn(fd, nstype);
      return typeof r === "number" ? r : -1;
    };
  }
  return setnsFn;
}

/** Moves the calling thread into the namespace open at `fd`. Returns 0, or the positive errno on failure. */
export function setns(fd: number, nstype: number = CLONE_NEWNET): number {
  const r = loadSetns()(fd, nstype);
  return r === 0 ? 0 : koffi.errno() || 1;
}
