// Namespace handles hold their namespace open (an fd and a socket): a data plane counts the connections using
// each handle and closes it with the last, or a deleted pod namespace would live on inside the forwarder.
import type { NetnsHandle } from "./index.js";

export class NetnsRefs {
  private readonly users = new Map<string, number>();

  /** `keep` (the node's own handle) is never closed. */
  constructor(private readonly keep: NetnsHandle) {}

  borrow(ns: NetnsHandle): NetnsHandle {
    this.users.set(ns.inodeUrl, (this.users.get(ns.inodeUrl) ?? 0) + 1);
    return ns;
  }

  release(ns: NetnsHandle): void {
    const n = (this.users.get(ns.inodeUrl) ?? 1) - 1;
    if (n > 0) return void this.users.set(ns.inodeUrl, n);
    this.users.delete(ns.inodeUrl);
    if (ns !== this.keep) ns.close();
  }

  inUse(inodeUrl: string): boolean {
    return this.users.has(inodeUrl);
  }
}
