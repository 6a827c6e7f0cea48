// The rtnetlink message layer: a typed wrapper over the `netlink` package's NetlinkSocket (which owns the
// native socket, sequence numbers and multipart reassembly) that
//   * runs one request at a time per socket (FIFO), so dumps never overlap (the kernel answers EBUSY to a
//     second dump on one socket) and replies cannot interleave;
//   * decodes NLMSG_ERROR itself, so failures keep their errno and become DataplaneErrors naming the
//     operation (the package's own check throws a bare `Error("Request rejected: EEXIST")`);
//   * retries dumps the kernel flags as interrupted (NLM_F_DUMP_INTR);
//   * bounds every request with a timeout.
// Everything above this file speaks in rt.Message objects; nothing above it touches the `netlink` package's
// socket API.
import netlink from "netlink";
import type { AttrStream, NetlinkMessage, NetlinkSocket, rt } from "netlink";
import { DataplaneError, errnoOf, type OpContext } from "../errors.js";
import { timedNetlink } from "../metrics.js";

const { parseError } = netlink;
const rtStructs = netlink.rt;

/** Netlink message header flags (linux/netlink.h). */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP_INTR: 0x10,
  ROOT: 0x100,
  MATCH: 0x200,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
} as const;

/** rtnetlink message types used by the data plane (linux/rtnetlink.h). */
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
  NEWRULE: 32,
  DELRULE: 33,
} as const;
export type RtmType = (typeof RTM)[keyof typeof RTM];

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const DUMP_RETRIES = 3;

/** Builds a message body: the fixed header struct plus attributes, written into the package's AttrStream. */
export type MessageBuilder = (out: AttrStream) => void;

export interface RtnlSocketOptions {
  /** Per-request timeout in ms (default 10 000). */
  timeoutMs?: number;
}

/**
 * One rtnetlink socket, bound to the namespace it was created in. Requests are serialised; the returned
 * promise resolves with the parsed reply messages (empty for a plain ACK) or rejects with a DataplaneError.
 */
export class RtnlSocket {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: Error | undefined;
  private readonly timeoutMs: number;
  /** Our netlink port id: fixed once the socket is bound; the package would ask (getsockname) per send. */
  private readonly port: number;

  constructor(
    private readonly sock: NetlinkSocket,
    opts: RtnlSocketOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.port = sock.address().port;
    // An 'error' event with no listener would crash the process; remember it and fail later requests instead.
    sock.on("error", (err) => {
      this.broken = err;
    });
  }

  /** True once the socket is closed or the kernel side failed; the owner should open a new one. */
  get unusable(): boolean {
    return this.closed || this.broken !== undefined;
  }

  /**
   * Sends one request and waits for its reply. `flags` are added to REQUEST|ACK. Dumps (NLM_F_DUMP) return
   * every part; other requests return the reply messages, or [] for a plain ACK.
   */
  request(type: RtmType, build: MessageBuilder, flags: number, ctx: OpContext): Promise<rt.Message[]> {
    return this.requestRaw(type, build, flags, ctx).then((msgs) => parseReplies(msgs, ctx));
  }

  /**
   * As `request`, but the reply messages are returned undecoded (NLMSG_ERROR and NLMSG_DONE already
   * checked and left out): for callers that look at a few bytes of a large dump, where decoding every
   * message with all its attributes would cost more than the kernel's part.
   */
  requestRaw(type: RtmType, build: MessageBuilder, flags: number, ctx: OpContext): Promise<NetlinkMessage[]> {
    const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
    const run = this.tail.then(() => timedNetlink(type, dump, () => this.send(type, build, flags, ctx)));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Closes the socket; queued requests fail with EBADF. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.sock.close();
    } catch {
      // already closed by the native side after an error
    }
  }

  private async send(
    type: RtmType,
    build: MessageBuilder,
    flags: number,
    ctx: OpContext,
  ): Promise<NetlinkMessage[]> {
    const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
    for (let attempt = 0; ; attempt++) {
      const msgs = await this.roundTrip(type, build, flags, ctx);
      const interrupted = dump && msgs.some((m) => (m.flags & NLM_F.DUMP_INTR) !== 0);
      if (interrupted && attempt < DUMP_RETRIES) continue;
      return checkReplies(msgs, ctx);
    }
  }

  private async roundTrip(
    type: RtmType,
    build: MessageBuilder,
    flags: number,
    ctx: OpContext,
  ): Promise<NetlinkMessage[]> {
    if (this.closed) throw DataplaneError.of(ctx, "EBADF", "rtnetlink socket is closed");
    if (this.broken) throw DataplaneError.of(ctx, "EIO", `rtnetlink socket failed: ${this.broken.message}`);
    const out = new netlink.AttrStream();
    build(out);
    try {
      const [msgs] = await this.sock.request(type, out.bufs, {
        flags,
        checkError: false,
        timeout: this.timeoutMs,
        localPort: this.port,
      });
      return msgs;
    } catch (err) {
      throw toDataplaneError(err, ctx, this.timeoutMs);
    }
  }
}

/** Throws the error a reply carries (NLMSG_ERROR, or a dump's failing NLMSG_DONE); returns the other messages. */
function checkReplies(msgs: NetlinkMessage[], ctx: OpContext): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  for (const m of msgs) {
    if (m.type === NLMSG_ERROR) {
      const { errno } = parseError(m.data, m.flags);
      if (errno !== 0) throw new DataplaneError(ctx, -errno);
      continue;
    }
    if (m.type === NLMSG_DONE) {
      // A dump that failed part-way reports a negative errno in its DONE payload.
      if (m.data.length >= 4) {
        const errno = m.data.readInt32LE(0);
        if (errno < 0) throw new DataplaneError(ctx, -errno);
      }
      continue;
    }
    out.push(m);
  }
  return out;
}

function parseReplies(msgs: NetlinkMessage[], ctx: OpContext): rt.Message[] {
  return msgs.map((m) => {
    try {
      return rtStructs.parseMessage(m.type, m.data);
    } catch (err) {
      throw new DataplaneError(ctx, errnoOf("EPROTO"), {
        detail: `cannot parse rtnetlink message type ${m.type}: ${(err as Error).message}`,
        cause: err,
      });
    }
  });
}

function toDataplaneError(err: unknown, ctx: OpContext, timeoutMs: number): DataplaneError {
  if (err instanceof DataplaneError) return err;
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  if (typeof e.errno === "number" && e.errno > 0) {
    return new DataplaneError(ctx, e.errno, { cause: err });
  }
  if (e.message === "Timeout has been reached") {
    return DataplaneError.of(ctx, "ETIMEDOUT", `no reply from the kernel within ${timeoutMs} ms`);
  }
  return new DataplaneError(ctx, errnoOf("EIO"), { detail: String(e.message ?? err), cause: err });
}

/** Opens an rtnetlink socket in the calling thread's current network namespace. */
export function openRtnlSocket(opts: RtnlSocketOptions = {}): RtnlSocket {
  // ref: false — an idle data plane must not keep the process alive; the package refs while requests wait.
  // Buffer sizes 0 keep the kernel defaults (message peeking sizes each read to the message).
  const sock = netlink.createNetlink(netlink.Protocol.ROUTE, {
    ref: false,
    recvBufferSize: 0,
    sendBufferSize: 0,
  });
  return new RtnlSocket(sock, opts);
}
