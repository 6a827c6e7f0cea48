// Link deletes off the main thread. Deleting a link costs ~20 ms of kernel time under the RTNL lock, during
// which the sending thread sits in sendmsg(2); done on the main thread that stalled every other request of
// the forwarder (Close p50 252 ms against 27 ms without a data plane). A worker thread does them instead.
// Falls back to deleting in this thread when a worker cannot be started.
import { Worker } from "node:worker_threads";
import type { NetnsHandle } from "./index.js";
import { observeNetlink } from "./metrics.js";

export class LinkDeleter {
  private worker?: Worker;
  private failed = false;
  private closing?: Promise<boolean>;
  private seq = 0;
  private readonly pending = new Map<
    number,
    { ns: NetnsHandle; name: string; resolve: () => void; reject: (e: Error) => void }
  >();

  /** Deletes `name` in the namespace of `ns` (missing is fine). */
  delete(ns: NetnsHandle, name: string): Promise<void> {
    const w = this.start();
    if (!w) return ns.link.delete(name, { missingOk: true });
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { ns, name, resolve, reject });
      if (this.pending.size === 1) w.ref();
      // The handle's own descriptor, not the path it was opened by: that may be a passed descriptor's
      // /proc/<pid>/fd/<n>, closed (and its number reused) as soon as the connection is gone.
      w.postMessage({ id, netns: `/proc/self/fd/${ns.fd}`, name });
    });
  }

  /**
   * Asks the worker to finish its deletes and end; resolves true once it has, false if it was still busy after
   * `graceMs` (a delete stuck in the kernel must not hold a stopping process for ever). Never
   * worker.terminate(): terminating while the worker is inside a netlink callback makes the native binding
   * throw through libuv and abort the whole process. Later calls return the first call's promise.
   */
  close(graceMs = 2000): Promise<boolean> {
    if (this.closing) return this.closing;
    const w = this.worker;
    this.worker = undefined;
    this.failed = true;
    if (!w) return (this.closing = Promise.resolve(true));
    // Ref'd until it ends: whoever awaits this must not see the event loop run dry first.
    w.ref();
    this.closing = new Promise((resolve) => {
      const t = setTimeout(() => {
        w.unref();
        resolve(false);
      }, graceMs);
      w.once("exit", () => {
        clearTimeout(t);
        resolve(true);
      });
      w.postMessage({ close: true });
    });
    return this.closing;
  }

  private start(): Worker | undefined {
    if (this.worker || this.failed) return this.worker;
    try {
      // From dist/ the worker is JavaScript; from sources (tsx) the worker registers tsx's loader first
      // (loader hooks are per thread, and Node 20 ignores --import in a worker's execArgv).
      const fromSource = import.meta.url.endsWith(".ts");
      const url = new URL(`./deleter-worker.${fromSource ? "ts" : "js"}`, import.meta.url);
      const w = fromSource
        ? new Worker(
            `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`,
            { eval: true },
          )
        : new Worker(url);
      w.on("message", (m: { id: number; error?: string; seconds?: number }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (this.pending.size === 0 && this.worker === w) w.unref();
        if (!p) return;
        // The worker reaches a namespace by path; when that path is gone (its process exited) our handle still
        // holds the namespace: delete through it.
        if (m.error) return this.inThread(p);
        if (m.seconds !== undefined) observeNetlink("dellink", m.seconds);
        p.resolve();
      });
      w.on("error", () => this.fail(w));
      w.on("exit", () => this.fail(w));
      w.unref();
      this.worker = w;
      return w;
    } catch {
      this.failed = true;
      return undefined;
    }
  }

  private fail(w: Worker): void {
    if (this.worker === w) this.worker = undefined;
    this.failed = true;
    for (const p of this.pending.values()) this.inThread(p);
    this.pending.clear();
  }

  private inThread(p: {
    ns: NetnsHandle;
    name: string;
    resolve: () => void;
    reject: (e: Error) => void;
  }): void {
    p.ns.link.delete(p.name, { missingOk: true }).then(p.resolve, p.reject);
  }
}
