// ICMP echo ("ping") from inside a network namespace, without spawning a process: the data-plane liveness
// check of spec §3.1 (sdk-kernel tools/heal) is built on it.
//
//   const r = await ping("/var/run/netns/pod1", { src: "169.254.0.2", dst: "169.254.0.1" });
//   r.received > 0  // alive
//
// The socket is created inside the namespace the same way as the rtnetlink sockets (netns.ts: enter with
// setns, create, leave — synchronously), bound to the source address, and driven non-blockingly: sends are
// scheduled with timers, replies are read with recvfrom(MSG_DONTWAIT) right after each send and then on a
// short back-off timer (1, 2, 4, 8 ms …), so the event loop is never blocked and an idle wait costs a few
// dozen syscalls per second.
//
// Socket kind: an unprivileged ICMP datagram socket ("ping socket": the kernel picks the echo id, fills in
// checksums and hands the socket only its own replies) when net.ipv4.ping_group_range allows it, else a raw
// socket (needs CAP_NET_RAW; the ICMP type filter keeps it to echo replies, and replies are matched by id,
// sequence, a random payload token and the source address). ping_group_range is per namespace and a new
// namespace starts at "1 0" (nobody), so in pods the raw socket is the usual case.
//
// RTTs use the kernel's receive timestamp of each reply (SIOCGSTAMPNS) against CLOCK_REALTIME at send, so
// they do not include the polling delay.
import { closeSync } from "node:fs";
import { randomBytes, randomInt } from "node:crypto";
import { DataplaneError, errnoName, errnoOf, type OpContext } from "./errors.js";
import {
  AF_INET,
  AF_INET6,
  CLOCK_REALTIME,
  ICMP6_FILTER,
  ICMP_FILTER,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  MSG_DONTWAIT,
  SIOCGSTAMPNS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_RAW,
  sysBind,
  sysClockGettime,
  sysIfNametoindex,
  sysIoctlPtr,
  sysRecvfrom,
  sysSendto,
  sysSetsockopt,
  sysSocket,
} from "./libc.js";
import { inNetns, openNetnsFile } from "./netns.js";
import { parseIp, type Family } from "./nl/codec.js";

/** A namespace to ping from: a NetnsHandle (anything with the namespace fd), or a path / file:// / inode:// URL. */
export type PingNetns = string | { readonly fd: number; readonly label: string };

/** Which ICMP socket to use: "auto" tries the datagram (ping) socket, then raw. */
export type IcmpSocketKind = "auto" | "dgram" | "raw";

export interface PingOptions {
  /** Source address, bound before sending. IPv6 link-local needs a zone: "fe80::1%eth0" (or "%<ifindex>"). */
  src: string;
  /** Destination address, same family as `src` (a zone, if any, must match the source's). */
  dst: string;
  /** Echo requests to send (default 4). */
  count?: number;
  /** Overall deadline in ms, from the first send (default 1000). */
  timeoutMs?: number;
  /** Gap between requests in ms (default timeoutMs / count, as upstream sdk-kernel does). */
  intervalMs?: number;
  /** Finish as soon as this many replies arrived (default count). The liveness check uses 1. */
  stopAfterReplies?: number;
  /** Socket kind (default "auto"). */
  socket?: IcmpSocketKind;
  /** Aborting rejects the promise with the signal's reason and closes the socket. */
  signal?: AbortSignal;
}

export interface PingResult {
  src: string;
  dst: string;
  /** Requests the kernel accepted. */
  sent: number;
  /** Distinct replies (duplicates are not counted). */
  received: number;
  /** Round-trip time of each reply in ms, in arrival order. */
  rttMs: number[];
  /** The socket kind that was used. */
  socket: "dgram" | "raw";
  /** Send/receive failures that did not stop the ping (e.g. "sendto: ENETUNREACH"), each once. */
  errors: string[];
}

const ICMP_ECHO = 8;
const ICMP_ECHOREPLY = 0;
const ICMPV6_ECHO_REQUEST = 128;
const ICMPV6_ECHO_REPLY = 129;
const HDR = 8;
const TOKEN = 8;
const PAYLOAD = 16; // token + 8 bytes of padding: 24-byte ICMP message
const MAX_POLL_MS = 8;
const EAGAIN = errnoOf("EAGAIN");
const EACCES = errnoOf("EACCES");
const EPERM = errnoOf("EPERM");

interface Endpoint {
  family: Family;
  bytes: Buffer;
  text: string;
  zone: string | undefined;
}

function parseEndpoint(s: string, what: string, ctx: OpContext): Endpoint {
  const pct = s.indexOf("%");
  const ipText = pct < 0 ? s : s.slice(0, pct);
  const zone = pct < 0 ? undefined : s.slice(pct + 1);
  const ip = parseIp(ipText);
  if (!ip) throw DataplaneError.of(ctx, "EINVAL", `${what} "${s}" is not an IPv4 or IPv6 address`);
  if (zone !== undefined && (ip.family !== 6 || zone.length === 0)) {
    throw DataplaneError.of(ctx, "EINVAL", `${what} "${s}": a zone (%dev) is only valid on an IPv6 address`);
  }
  return { family: ip.family, bytes: ip.bytes, text: ip.text, zone };
}

function isLinkLocal6(b: Buffer): boolean {
  return b[0] === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80;
}

function sockaddr(ep: Endpoint, scopeId: number): Buffer {
  if (ep.family === 4) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0); // sa_family is host order (little-endian on every arch we run on)
    ep.bytes.copy(sa, 4);
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  ep.bytes.copy(sa, 8);
  sa.writeUInt32LE(scopeId, 24);
  return sa;
}

/** The source address in a sockaddr_in/_in6 filled in by recvfrom. */
function sockaddrIp(sa: Buffer, len: number): Buffer | undefined {
  const fam = sa.readUInt16LE(0);
  if (fam === AF_INET && len >= 8) return sa.subarray(4, 8);
  if (fam === AF_INET6 && len >= 24) return sa.subarray(8, 24);
  return undefined;
}

/** RFC 1071 internet checksum (IPv4 ICMP on raw sockets; the kernel does it for ICMPv6 and ping sockets). */
function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2 === 1) sum += (b[b.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A native-endian array of 32-bit words as a Buffer (for setsockopt filters). */
function u32s(words: number[]): Buffer {
  return Buffer.from(new Uint32Array(words).buffer);
}

function realtimeNs(): bigint | undefined {
  const ts = Buffer.alloc(16);
  if (sysClockGettime(CLOCK_REALTIME, ts) !== 0) return undefined;
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}

interface OpenedSocket {
  fd: number;
  kind: "dgram" | "raw";
  scopeId: number;
}

/**
 * Creates, configures and binds the ICMP socket. Runs inside the namespace (if_nametoindex resolves zones
 * there); the socket stays tied to that namespace for its life. Throws DataplaneError; never leaks the fd.
 */
function openIcmpSocket(src: Endpoint, kind: IcmpSocketKind, ctx: OpContext): OpenedSocket {
  const v6 = src.family === 6;
  const domain = v6 ? AF_INET6 : AF_INET;
  const proto = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
  const flags = SOCK_NONBLOCK | SOCK_CLOEXEC;

  let scopeId = 0;
  if (src.zone !== undefined) {
    scopeId = /^\d+$/.test(src.zone) ? Number(src.zone) : sysIfNametoindex(src.zone);
    if (scopeId < 0) {
      throw new DataplaneError(ctx, -scopeId, {
        detail: `no interface "${src.zone}" for the zone of ${src.text}`,
      });
    }
  } else if (v6 && isLinkLocal6(src.bytes)) {
    throw DataplaneError.of(
      ctx,
      "EINVAL",
      `link-local source ${src.text} needs a zone, e.g. ${src.text}%eth0`,
    );
  }

  let fd = -1;
  let used: "dgram" | "raw" = "dgram";
  if (kind !== "raw") {
    fd = sysSocket(domain, SOCK_DGRAM | flags, proto);
    if (fd < 0 && (kind === "dgram" || (-fd !== EACCES && -fd !== EPERM))) {
      throw new DataplaneError({ ...ctx, op: `${ctx.op} socket(dgram)` }, -fd, {
        detail:
          -fd === EACCES
            ? "ICMP datagram sockets are not allowed here (net.ipv4.ping_group_range): use a raw socket"
            : undefined,
      });
    }
  }
  if (fd < 0) {
    used = "raw";
    fd = sysSocket(domain, SOCK_RAW | flags, proto);
    if (fd < 0) {
      throw new DataplaneError({ ...ctx, op: `${ctx.op} socket(raw)` }, -fd, {
        detail: -fd === EPERM ? "raw ICMP sockets need CAP_NET_RAW" : undefined,
      });
    }
  }

  try {
    if (used === "raw") {
      // Only echo replies reach the socket: bit n set = drop type n.
      const r = v6
        ? sysSetsockopt(
            fd,
            IPPROTO_ICMPV6,
            ICMP6_FILTER,
            u32s([~0, ~0, ~0, ~0, ~(1 << (ICMPV6_ECHO_REPLY - 128)), ~0, ~0, ~0]),
          )
        : sysSetsockopt(fd, SOL_RAW, ICMP_FILTER, u32s([~(1 << ICMP_ECHOREPLY)]));
      if (r < 0) throw new DataplaneError({ ...ctx, op: `${ctx.op} setsockopt(filter)` }, -r);
    }
    const b = sysBind(fd, sockaddr(src, scopeId));
    if (b < 0) {
      throw new DataplaneError({ ...ctx, op: `${ctx.op} bind` }, -b, {
        detail: `cannot bind to ${src.text}: is it assigned to an interface in this namespace?`,
      });
    }
    // The first SIOCGSTAMPNS turns on receive timestamps for the socket (it answers ENOENT: nothing read yet).
    sysIoctlPtr(fd, SIOCGSTAMPNS, Buffer.alloc(16));
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return { fd, kind: used, scopeId };
}

/**
 * Sends `count` ICMP echo requests from `src` to `dst` inside namespace `ns` and collects the replies until
 * all arrived, `stopAfterReplies` arrived, or `timeoutMs` passed. Resolves with counts and RTTs — a lost
 * packet, an unreachable network (ENETUNREACH on send) etc. are results, not errors. Rejects with a
 * DataplaneError (with errno) for bad arguments (EINVAL), a missing namespace (ENOENT), a source address
 * that is not in the namespace (EADDRNOTAVAIL), an unknown zone (ENODEV) or no permission (EPERM/EACCES).
 */
export async function ping(ns: PingNetns, opts: PingOptions): Promise<PingResult> {
  const label = typeof ns === "string" ? ns : ns.label;
  const ctx: OpContext = { op: "icmp ping", object: `${opts.src} -> ${opts.dst}`, netns: label };
  const src = parseEndpoint(opts.src, "source", ctx);
  const dst = parseEndpoint(opts.dst, "destination", ctx);
  if (src.family !== dst.family) {
    throw DataplaneError.of(ctx, "EINVAL", `source and destination are of different families`);
  }
  if (dst.zone !== undefined && dst.zone !== src.zone) {
    throw DataplaneError.of(
      ctx,
      "EINVAL",
      `the destination zone must be the source's (${src.zone ?? "none"})`,
    );
  }
  const count = opts.count ?? 4;
  const timeoutMs = opts.timeoutMs ?? 1000;
  const intervalMs = opts.intervalMs ?? timeoutMs / count;
  const stopAfter = Math.min(opts.stopAfterReplies ?? count, count);
  if (!Number.isInteger(count) || count < 1 || count > 0xffff) {
    throw DataplaneError.of(ctx, "EINVAL", `count ${count} must be an integer in 1..65535`);
  }
  if (!(timeoutMs > 0) || !(intervalMs >= 0) || !(stopAfter >= 1)) {
    throw DataplaneError.of(ctx, "EINVAL", "timeoutMs must be > 0, intervalMs >= 0, stopAfterReplies >= 1");
  }
  opts.signal?.throwIfAborted();

  let sock: OpenedSocket;
  if (typeof ns === "string") {
    const file = openNetnsFile(ns);
    try {
      sock = inNetns(file.fd, ctx, () => openIcmpSocket(src, opts.socket ?? "auto", ctx));
    } finally {
      closeSync(file.fd);
    }
  } else {
    sock = inNetns(ns.fd, ctx, () => openIcmpSocket(src, opts.socket ?? "auto", ctx));
  }

  try {
    return await run(sock, src, dst, { count, timeoutMs, intervalMs, stopAfter, signal: opts.signal });
  } finally {
    closeSync(sock.fd);
  }
}

interface RunParams {
  count: number;
  timeoutMs: number;
  intervalMs: number;
  stopAfter: number;
  signal: AbortSignal | undefined;
}

function run(sock: OpenedSocket, src: Endpoint, dst: Endpoint, p: RunParams): Promise<PingResult> {
  const v6 = dst.family === 6;
  const raw = sock.kind === "raw";
  const id = randomInt(1, 0x10000); // ping sockets replace it with the socket's own id
  const seq0 = randomInt(0, 0x10000);
  const token = randomBytes(TOKEN);
  const to = sockaddr(dst, sock.scopeId);
  const result: PingResult = {
    src: src.zone ? `${src.text}%${src.zone}` : src.text,
    dst: dst.text,
    sent: 0,
    received: 0,
    rttMs: [],
    socket: sock.kind,
    errors: [],
  };
  const sentAt = new Map<number, { real: bigint | undefined; mono: bigint }>(); // seq → send times
  const replied = new Set<number>();
  const rxBuf = Buffer.alloc(2048);
  const rxAddr = Buffer.alloc(28);
  const rxAddrLen = new Uint32Array(1);
  const stamp = Buffer.alloc(16);
  const noteError = (what: string, errno: number): void => {
    const text = `${what}: ${errnoName(errno)}`;
    if (!result.errors.includes(text)) result.errors.push(text);
  };

  const sendOne = (i: number): void => {
    const seq = (seq0 + i) & 0xffff;
    const pkt = Buffer.alloc(HDR + PAYLOAD);
    pkt[0] = v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO;
    pkt.writeUInt16BE(id, 4);
    pkt.writeUInt16BE(seq, 6);
    token.copy(pkt, HDR);
    if (raw && !v6) pkt.writeUInt16BE(inetChecksum(pkt), 2);
    const times = { real: realtimeNs(), mono: process.hrtime.bigint() };
    const n = sysSendto(sock.fd, pkt, 0, to);
    if (n < 0) {
      noteError("sendto", -n);
      return;
    }
    sentAt.set(seq, times);
    result.sent++;
  };

  /** Reads every queued datagram; records matching replies. */
  const drain = (): void => {
    for (;;) {
      const n = sysRecvfrom(sock.fd, rxBuf, MSG_DONTWAIT, rxAddr, rxAddrLen);
      if (n < 0) {
        // EAGAIN: queue empty. Anything else (e.g. EHOSTUNREACH from an ICMP error on a ping socket) is
        // noted; the next poll reads on.
        if (-n !== EAGAIN) noteError("recvfrom", -n);
        return;
      }
      const monoNow = process.hrtime.bigint();
      const from = sockaddrIp(rxAddr, rxAddrLen[0] ?? 0);
      if (!from || !from.equals(dst.bytes)) continue;
      let off = 0;
      if (raw && !v6) {
        if (n < 20 || (rxBuf[0] ?? 0) >> 4 !== 4) continue;
        off = ((rxBuf[0] ?? 0) & 0x0f) * 4; // IPv4 raw sockets get the IP header too
      }
      if (n < off + HDR + TOKEN) continue;
      if (rxBuf[off] !== (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY) || rxBuf[off + 1] !== 0) continue;
      if (raw && rxBuf.readUInt16BE(off + 4) !== id) continue;
      if (!rxBuf.subarray(off + HDR, off + HDR + TOKEN).equals(token)) continue;
      const seq = rxBuf.readUInt16BE(off + 6);
      const times = sentAt.get(seq);
      if (!times || replied.has(seq)) continue; // not ours, or a duplicate
      replied.add(seq);
      result.received++;
      let rtt = Number(monoNow - times.mono) / 1e6;
      if (times.real !== undefined && sysIoctlPtr(sock.fd, SIOCGSTAMPNS, stamp) === 0) {
        const rx = stamp.readBigInt64LE(0) * 1_000_000_000n + stamp.readBigInt64LE(8);
        const kernelRtt = Number(rx - times.real) / 1e6;
        if (kernelRtt >= 0 && kernelRtt <= rtt) rtt = kernelRtt;
      }
      result.rttMs.push(Math.round(rtt * 1000) / 1000);
    }
  };

  return new Promise<PingResult>((resolve, reject) => {
    const start = performance.now();
    const deadline = start + p.timeoutMs;
    let nextIndex = 0;
    let pollDelay = 1;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err?: unknown): void => {
      if (timer) clearTimeout(timer);
      p.signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve(result);
      else reject(err instanceof Error ? err : new Error("ping failed", { cause: err }));
    };
    const onAbort = (): void => finish(p.signal?.reason ?? new Error("ping aborted"));
    p.signal?.addEventListener("abort", onAbort, { once: true });

    const step = (): void => {
      timer = undefined;
      try {
        const now = performance.now();
        while (nextIndex < p.count && now >= start + nextIndex * p.intervalMs && now < deadline) {
          sendOne(nextIndex++);
          pollDelay = 1;
        }
        drain();
        if (result.received >= p.stopAfter || result.received >= p.count) return finish();
        const now2 = performance.now();
        if (now2 >= deadline) return finish();
        if (nextIndex >= p.count && result.sent === 0) return finish(); // every send failed: nothing to wait for
        let wake = Math.min(now2 + pollDelay, deadline);
        if (nextIndex < p.count) wake = Math.min(wake, start + nextIndex * p.intervalMs);
        pollDelay = Math.min(pollDelay * 2, MAX_POLL_MS);
        timer = setTimeout(step, Math.max(0, wake - now2));
      } catch (err) {
        finish(err);
      }
    };
    step();
  });
}
