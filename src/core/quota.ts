// Per-identity quotas for state a caller makes a hop keep (registrations, watch and monitor streams): one
// identity that opens too much gets RESOURCE_EXHAUSTED naming the limit, and cannot starve the others.
import { status } from "@grpc/grpc-js";
import { StatusError } from "./errors.js";

export class IdentityQuota {
  private readonly counts = new Map<string, number>();

  /**
   * `what` names the counted thing in messages ("open MonitorConnections streams"), `option` the setting
   * that raises the limit.
   */
  constructor(
    readonly max: number,
    private readonly what: string,
    private readonly option: string,
    /** Identities that are not counted (proxies acting for many callers, e.g. nsmgrs at the registry). */
    private readonly exempt: (id: string) => boolean = () => false,
  ) {}

  /** How many `id` holds. */
  count(id: string): number {
    return this.counts.get(id) ?? 0;
  }

  /** Takes one for `id`; throws RESOURCE_EXHAUSTED at the limit. The returned release runs once. */
  acquire(id: string): () => void {
    if (this.exempt(id)) return () => undefined;
    const n = this.count(id);
    if (n >= this.max) {
      throw new StatusError(
        status.RESOURCE_EXHAUSTED,
        `${id || "(no identity)"} has ${n} ${this.what}: the limit per identity is ${this.max} (${this.option})`,
      );
    }
    this.counts.set(id, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(id);
    };
  }

  /** Counts one for `id` without checking the limit: undoes a release. */
  add(id: string): void {
    if (this.exempt(id)) return;
    this.counts.set(id, this.count(id) + 1);
  }

  /** Gives one back for `id` (for holders that keep no release function, e.g. table records). */
  release(id: string): void {
    if (this.exempt(id)) return;
    const n = this.count(id) - 1;
    if (n > 0) this.counts.set(id, n);
    else this.counts.delete(id);
  }
}
