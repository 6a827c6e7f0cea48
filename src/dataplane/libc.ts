// The libc calls Node does not offer, through koffi: setns(2), used to open sockets inside another network
// namespace (enter, create socket, leave — synchronously on the calling thread), fstatfs(2) and the
// NS_GET_NSTYPE ioctl to check that a file is a network namespace, and the socket calls icmp.ts needs for
// ICMP echo (below).
// unshare(2) makes the TF emulator's private per-VN namespaces (pods' namespaces are made by their owners).
import os from "node:os";
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

type UnshareFn = (flags: number) => number;
let unshareFn: UnshareFn | undefined;

/** Moves the calling thread into new namespaces of `flags`. Returns 0, or the positive errno on failure. */
export function unshare(flags: number): number {
  if (!unshareFn) {
    const fn = koffi.load("libc.so.6").func("int unshare(int flags)");
    unshareFn = (f) => {
      const r: unknown = fn(f);
      return typeof r === "number" ? r : -1;
    };
  }
  return unshareFn(flags) === 0 ? 0 : koffi.errno() || 1;
}

// ---- Is this file a network namespace? (netns.ts) ----

/** open(2) flags for namespace files: never block (a FIFO would), never leak into children. */
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
/** statfs f_type of the namespace filesystem (linux/magic.h). */
export const NSFS_MAGIC = 0x6e736673;
/** _IO(0xb7, 0x3) from linux/nsfs.h: the CLONE_NEW* type of the namespace open at the fd (Linux ≥ 4.11). */
export const NS_GET_NSTYPE = 0xb703;

interface NsFns {
  fstatfs: KoffiFn;
  ioctl: KoffiFn;
}

let nsFns: NsFns | undefined;

function loadNsFns(): NsFns {
  if (!nsFns) {
    const libc = koffi.load("libc.so.6");
    nsFns = {
      fstatfs: libc.func("int fstatfs(int fd, void *buf)"),
      ioctl: libc.func("int ioctl(int fd, unsigned long request, ...)"),
    };
  }
  return nsFns;
}

/** fstatfs(2): the f_type of the filesystem holding the file open at `fd`, or -errno. */
export function sysFstatfsType(fd: number): number {
  // struct statfs starts with f_type (a long, 8 bytes on 64-bit Linux); the whole struct is 120 bytes there.
  const buf = Buffer.alloc(256);
  const r = sysResult(loadNsFns().fstatfs(fd, buf));
  if (r < 0) return r;
  const wide = process.arch.endsWith("64") || process.arch === "s390x";
  if (!wide) return os.endianness() === "LE" ? buf.readUInt32LE(0) : buf.readUInt32BE(0);
  return Number(os.endianness() === "LE" ? buf.readBigUInt64LE(0) : buf.readBigUInt64BE(0));
}

/** ioctl(2) without an argument: the result, or -errno. */
export function sysIoctl(fd: number, request: number): number {
  return sysResult(loadNsFns().ioctl(fd, request));
}

// ---- Sockets for ICMP echo (icmp.ts) ----
// Node has no raw or ICMP sockets, so icmp.ts drives them through these thin wrappers: each returns what the
// syscall returns on success and `-errno` on failure (never throws), and is loaded on first use.

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_ICMP = 1;
export const IPPROTO_ICMPV6 = 58;
/** setsockopt level for ICMP_FILTER on IPv4 raw sockets (linux/socket.h SOL_RAW). */
export const SOL_RAW = 255;
/** IPv4 raw ICMP: bit n set = drop ICMP type n (linux/icmp.h). */
export const ICMP_FILTER = 1;
/** IPv6 raw ICMPv6 (level IPPROTO_ICMPV6): struct icmp6_filter, bit n set = drop type n (linux/icmpv6.h). */
export const ICMP6_FILTER = 1;
export const MSG_DONTWAIT = 0x40;
/** struct timespec receive timestamp of the last packet read (asm-generic/sockios.h). */
export const SIOCGSTAMPNS = 0x8907;
export const CLOCK_REALTIME = 0;

type KoffiFn = ReturnType<ReturnType<typeof koffi.load>["func"]>;

interface SockFns {
  socket: KoffiFn;
  bind: KoffiFn;
  sendto: KoffiFn;
  recvfrom: KoffiFn;
  setsockopt: KoffiFn;
  ioctl: KoffiFn;
  clockGettime: KoffiFn;
  ifNametoindex: KoffiFn;
}

let sockFns: SockFns | undefined;

function loadSockFns(): SockFns {
  if (!sockFns) {
    const libc = koffi.load("libc.so.6");
    sockFns = {
      socket: libc.func("int socket(int domain, int type, int protocol)"),
      bind: libc.func("int bind(int fd, const void *addr, uint32_t addrlen)"),
      sendto: libc.func(
        "long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)",
      ),
      recvfrom: libc.func(
        "long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *addrlen)",
      ),
      setsockopt: libc.func("int setsockopt(int fd, int level, int name, const void *val, uint32_t len)"),
      ioctl: libc.func("int ioctl(int fd, unsigned long request, ...)"),
      clockGettime: libc.func("int clock_gettime(int clockid, void *ts)"),
      ifNametoindex: libc.func("unsigned int if_nametoindex(const char *name)"),
    };
  }
  return sockFns;
}

/** A syscall result: the value if ≥ 0, otherwise `-errno` (read from koffi right after the call). */
function sysResult(r: unknown): number {
  const n = typeof r === "bigint" ? Number(r) : typeof r === "number" ? r : -1;
  return n < 0 ? -(koffi.errno() || 1) : n;
}

/** socket(2): the new fd, or -errno. */
export function sysSocket(domain: number, type: number, protocol: number): number {
  return sysResult(loadSockFns().socket(domain, type, protocol));
}

/** bind(2): 0, or -errno. */
export function sysBind(fd: number, addr: Buffer): number {
  return sysResult(loadSockFns().bind(fd, addr, addr.length));
}

/** sendto(2): bytes sent, or -errno. */
export function sysSendto(fd: number, buf: Buffer, flags: number, addr: Buffer): number {
  return sysResult(loadSockFns().sendto(fd, buf, buf.length, flags, addr, addr.length));
}

/** recvfrom(2) into `buf`, the sender's address into `addr` (its length into addrLen[0]): bytes, or -errno. */
export function sysRecvfrom(
  fd: number,
  buf: Buffer,
  flags: number,
  addr: Buffer,
  addrLen: Uint32Array,
): number {
  addrLen[0] = addr.length;
  return sysResult(loadSockFns().recvfrom(fd, buf, buf.length, flags, addr, addrLen));
}

/** setsockopt(2): 0, or -errno. */
export function sysSetsockopt(fd: number, level: number, name: number, val: Buffer): number {
  return sysResult(loadSockFns().setsockopt(fd, level, name, val, val.length));
}

/** ioctl(2) with a pointer argument: the result, or -errno. */
export function sysIoctlPtr(fd: number, request: number, arg: Buffer): number {
  return sysResult(loadSockFns().ioctl(fd, request, "void *", arg));
}

/** clock_gettime(2) into a 16-byte struct timespec: 0, or -errno. */
export function sysClockGettime(clockId: number, ts: Buffer): number {
  return sysResult(loadSockFns().clockGettime(clockId, ts));
}

/** if_nametoindex(3) in the calling thread's namespace: the index, or -errno (ENODEV for no such interface). */
export function sysIfNametoindex(name: string): number {
  const r = sysResult(loadSockFns().ifNametoindex(name));
  return r === 0 ? -(koffi.errno() || 19) : r;
}
