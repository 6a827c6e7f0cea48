// A unix stream socket as a Node Duplex that also carries file descriptors, as upstream's grpcfd does: sent
// descriptors ride with SCM_RIGHTS on the next bytes written, received ones are kept by the (dev, ino) they
// name until someone asks for `inode://<dev>/<ino>`. TLS and HTTP/2 run on top of it unchanged.
import { Duplex } from "node:stream";
import { closeFd as closeQuietly, dupFd, inodeUrlOfFd } from "./files.js";
import { EAGAIN, fdpass, type Watcher } from "./native.js";

/** Both ends of descriptor passing on one connection (upstream: grpcfd.FDTransceiver). */
export interface FdTransceiver {
  /** Queues a copy of `fd` to travel with the next bytes written; the caller keeps its own. */
  sendFd(fd: number): void;
  /**
   * A copy of the descriptor the peer sent for `inodeUrl` (now or later), owned by the caller; rejects when
   * `signal` aborts or the connection closes first.
   */
  recvFd(inodeUrl: string, signal?: AbortSignal): Promise<number>;
}

const readBuffer = Buffer.allocUnsafe(64 * 1024);
// A descriptor nobody asks for (a peer may send any, e.g. the namespace of a response we already know) is held
// for a while, then closed: it pins what it names (a deleted pod's namespace lives on while a descriptor of it
// is open). Upstream's grpcfd holds them until the connection closes; peers resend with every call anyway.
const maxHeldFds = 256;
const unclaimedTtlMs = 5 * 60_000;

interface Waiter {
  resolve(fd: number): void;
  reject(err: Error): void;
}

export class FdSocket extends Duplex implements FdTransceiver {
  private readonly watcher: Watcher;
  // Received, not yet asked for; oldest first.
  // Several may name one inode (two calls from one pod, each with its own copy): each is claimed once.
  private readonly received = new Map<number, { url: string; fd: number; timer: NodeJS.Timeout }>();
  private receivedCount = 0;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private toSend: number[] = [];
  private pendingWrite: { buf: Buffer; cb: (err?: Error | null) => void } | undefined;
  private wantRead = false;
  private isClosed = false;

  /** Takes ownership of `fd`, a connected unix stream socket (closed when the stream is destroyed). */
  constructor(private readonly fd: number) {
    super({ allowHalfOpen: false });
    this.watcher = fdpass().watch(fd, (status, readable, writable) =>
      this.onReady(status, readable, writable),
    );
  }

  sendFd(fd: number): void {
    const copy = dupFd(fd);
    if (this.isClosed) {
      closeQuietly(copy);
      throw new Error("cannot send a descriptor: the connection is closed");
    }
    this.toSend.push(copy);
  }

  /** The descriptor becomes the caller's: asking twice needs the peer to send it twice (it does, per call). */
  recvFd(inodeUrl: string, signal?: AbortSignal): Promise<number> {
    for (const [id, h] of this.received) {
      if (h.url !== inodeUrl) continue;
      clearTimeout(h.timer);
      this.received.delete(id);
      return Promise.resolve(h.fd);
    }
    if (this.isClosed) return Promise.reject(new Error(`connection closed before ${inodeUrl} arrived`));
    return new Promise((resolve, reject) => {
      const set = this.waiters.get(inodeUrl) ?? new Set<Waiter>();
      this.waiters.set(inodeUrl, set);
      const onAbort = (): void => {
        set.delete(w);
        reject(new Error(`timeout in recvfd waiting for ${inodeUrl}`));
      };
      const w: Waiter = {
        resolve: (fd) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(fd);
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      set.add(w);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private keep(fd: number): void {
    let url: string;
    try {
      url = inodeUrlOfFd(fd);
    } catch {
      closeQuietly(fd);
      return;
    }
    const set = this.waiters.get(url);
    if (set && set.size > 0) {
      this.waiters.delete(url);
      let first = true;
      for (const w of set) {
        try {
          w.resolve(first ? fd : dupFd(fd));
        } catch (err) {
          w.reject(err as Error);
        }
        first = false;
      }
      return;
    }
    if (this.received.size >= maxHeldFds) this.release(this.received.keys().next().value as number);
    const id = this.receivedCount++;
    const timer = setTimeout(() => this.release(id), unclaimedTtlMs);
    timer.unref();
    this.received.set(id, { url, fd, timer });
  }

  private release(id: number): void {
    const h = this.received.get(id);
    if (!h) return;
    clearTimeout(h.timer);
    closeQuietly(h.fd);
    this.received.delete(id);
  }

  // Readiness set last (bit 1 read, bit 2 write): most calls change nothing and need not cross into C.
  private watching = 0;

  private events(): void {
    const want = (this.wantRead ? 1 : 0) | (this.pendingWrite !== undefined ? 2 : 0);
    if (this.isClosed || want === this.watching) return;
    this.watching = want;
    fdpass().setEvents(this.watcher, this.wantRead, this.pendingWrite !== undefined);
  }

  override _read(): void {
    if (this.wantRead) return;
    this.wantRead = true;
    this.events();
  }

  private onReady(status: number, readable: boolean, writable: boolean): void {
    if (status < 0) {
      this.destroy(new Error(`unix socket poll failed (${status})`));
      return;
    }
    if (writable) this.flush();
    if (readable) this.readSome();
  }

  private readSome(): void {
    const addon = fdpass();
    while (this.wantRead && !this.isClosed) {
      const [n, fds] = addon.recv(this.fd, readBuffer);
      for (const fd of fds) this.keep(fd);
      if (n === -EAGAIN) return;
      if (n < 0) {
        this.destroy(Object.assign(new Error(`unix socket read failed (errno ${-n})`), { errno: -n }));
        return;
      }
      if (n === 0) {
        this.wantRead = false;
        this.events();
        this.push(null);
        return;
      }
      // One read buffer for every socket: what a read brought is copied out at its size.
      if (!this.push(Buffer.from(readBuffer.subarray(0, n)))) {
        this.wantRead = false;
        this.events();
      }
      // A short read drained the socket: readiness is level-triggered, so anything later wakes us again.
      if (n < readBuffer.length) return;
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pendingWrite = { buf: chunk, cb };
    this.flush();
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.pendingWrite = { buf: Buffer.concat(chunks.map((c) => c.chunk)), cb };
    this.flush();
  }

  /** Writes as much of the pending chunk as the socket takes, queued descriptors with its first bytes. */
  private flush(): void {
    const p = this.pendingWrite;
    if (!p || this.isClosed) return;
    while (p.buf.length > 0) {
      const fds = this.toSend.splice(0, 64);
      const n = fdpass().send(this.fd, p.buf, fds);
      if (n < 0) {
        this.toSend.unshift(...fds);
        if (n === -EAGAIN) {
          this.events();
          return;
        }
        this.pendingWrite = undefined;
        this.events();
        p.cb(Object.assign(new Error(`unix socket write failed (errno ${-n})`), { errno: -n }));
        return;
      }
      // The kernel holds its own references to descriptors in flight: ours can go.
      for (const fd of fds) closeQuietly(fd);
      p.buf = p.buf.subarray(n);
    }
    this.pendingWrite = undefined;
    this.events();
    p.cb();
  }

  // Our side is done writing: the peer reads EOF (and closes its side) once it has read the rest.
  override _final(cb: (err?: Error | null) => void): void {
    if (!this.isClosed) fdpass().shutdownWrite(this.fd);
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (!this.isClosed) {
      this.isClosed = true;
      fdpass().unwatch(this.watcher);
      closeQuietly(this.fd);
      for (const id of [...this.received.keys()]) this.release(id);
      for (const fd of this.toSend) closeQuietly(fd);
      this.toSend = [];
      const gone = new Error("connection closed before the descriptor arrived");
      for (const set of this.waiters.values()) for (const w of set) w.reject(gone);
      this.waiters.clear();
      const p = this.pendingWrite;
      this.pendingWrite = undefined;
      p?.cb(err ?? new Error("connection closed"));
    }
    cb(err);
  }
}
