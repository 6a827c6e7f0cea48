// An address pool over one CIDR with amortised O(1) allocation: a cursor over never-used addresses, a FIFO of
// freed addresses, and "gaps" — never-used ranges the cursor jumped over because a request excluded them.
// Nothing here scans the pool; the cost of one allocation is bounded by the freed/gapped entries it must skip
// because this particular request excludes them, plus the request's excluded prefixes.
//
// All methods are synchronous, so within one Node process an allocation can never interleave with another.
import {
  contains,
  firstAddr,
  formatCidr,
  lastAddr,
  networkOf,
  overlaps,
  type Cidr,
  type IpAddr,
} from "./cidr.js";

interface Range {
  start: bigint;
  end: bigint;
}

export class AddressPool {
  /** The pool's network, e.g. 169.254.0.0/16. */
  readonly cidr: Cidr;
  /** The pool as text, for logs and errors. */
  readonly text: string;
  /** First and last address that may be handed out. */
  readonly first: bigint;
  readonly last: bigint;

  private readonly used = new Set<bigint>();
  /** Next address never handed out; everything from here to `last` is free unless in `used` (recovered). */
  private cursor: bigint;
  /** Freed addresses, oldest first; entries may be stale (taken again by recovery), checked against `used`. */
  private freed: bigint[] = [];
  private freedHead = 0;
  /** Never-used ranges the cursor skipped because a request excluded them; sorted, disjoint. */
  private gaps: Range[] = [];

  constructor(cidr: Cidr) {
    this.cidr = networkOf(cidr);
    this.text = formatCidr(this.cidr);
    let first = firstAddr(this.cidr);
    let last = lastAddr(this.cidr);
    // An IPv4 network shorter than /31 has a network and a broadcast address: never hand those out.
    if (cidr.family === 4 && cidr.bits < 31) {
      first += 1n;
      last -= 1n;
    }
    this.first = first;
    this.last = last;
    this.cursor = first;
  }

  /** Number of addresses currently held. */
  get inUse(): number {
    return this.used.size;
  }

  /** Whether the address may ever be handed out by this pool (inside the CIDR, not network/broadcast). */
  owns(ip: IpAddr): boolean {
    return ip.family === this.cidr.family && ip.value >= this.first && ip.value <= this.last;
  }

  isUsed(value: bigint): boolean {
    return this.used.has(value);
  }

  /** Takes a specific address (recovery): true if it is ours, free and not excluded. */
  take(ip: IpAddr, excluded: readonly Cidr[]): boolean {
    if (!this.owns(ip) || this.used.has(ip.value) || isExcluded(ip.value, this.cidr, excluded)) return false;
    this.used.add(ip.value);
    return true;
  }

  /** Allocates one address that is not inside any of `excluded`; undefined when none is left. */
  allocate(excluded: readonly Cidr[]): bigint | undefined {
    const relevant = excluded.filter((e) => overlaps(e, this.cidr));
    const value = this.fromFreed(relevant) ?? this.fromGaps(relevant) ?? this.fromCursor(relevant);
    if (value !== undefined) this.used.add(value);
    return value;
  }

  /** Returns an address to the pool; unknown addresses are ignored (a double free is harmless). */
  release(value: bigint): void {
    if (!this.used.delete(value)) return;
    // At or past the cursor the address is still reachable by the cursor.
    if (value < this.cursor) this.freed.push(value);
  }

  private fromFreed(excluded: readonly Cidr[]): bigint | undefined {
    const q = this.freed;
    // Drop stale entries at the head (taken again by recovery since they were freed).
    while (this.freedHead < q.length && this.used.has(q[this.freedHead]!)) this.freedHead++;
    for (let i = this.freedHead; i < q.length; i++) {
      const value = q[i]!;
      if (this.used.has(value) || isExcluded(value, this.cidr, excluded)) continue;
      // Take entry i: the head entry (skipped by this request only) moves into its slot.
      q[i] = q[this.freedHead]!;
      this.freedHead++;
      this.compactFreed();
      return value;
    }
    this.compactFreed();
    return undefined;
  }

  private compactFreed(): void {
    if (this.freedHead > 1024 && this.freedHead * 2 > this.freed.length) {
      this.freed = this.freed.slice(this.freedHead);
      this.freedHead = 0;
    }
  }

  private fromGaps(excluded: readonly Cidr[]): bigint | undefined {
    for (let i = 0; i < this.gaps.length; i++) {
      const gap = this.gaps[i]!;
      const value = this.firstCandidate(gap.start, gap.end, excluded);
      if (value === undefined) continue;
      const parts: Range[] = [];
      if (value > gap.start) parts.push({ start: gap.start, end: value - 1n });
      if (value < gap.end) parts.push({ start: value + 1n, end: gap.end });
      this.gaps.splice(i, 1, ...parts);
      return value;
    }
    return undefined;
  }

  /** First address in [start, end] that is neither excluded nor used, jumping over excluded prefixes. */
  private firstCandidate(start: bigint, end: bigint, excluded: readonly Cidr[]): bigint | undefined {
    let value = start;
    while (value <= end) {
      const hit = excluded.find((e) => contains(e, { family: this.cidr.family, value }));
      if (hit) value = lastAddr(hit) + 1n;
      else if (this.used.has(value)) value++;
      else return value;
    }
    return undefined;
  }

  private fromCursor(excluded: readonly Cidr[]): bigint | undefined {
    while (this.cursor <= this.last) {
      const value = this.cursor;
      const hit = excluded.find((e) => contains(e, { family: this.cidr.family, value }));
      if (hit) {
        // Skip the excluded range for now but keep it for requests that do not exclude it.
        const end = lastAddr(hit) < this.last ? lastAddr(hit) : this.last;
        this.addGap(value, end);
        this.cursor = end + 1n;
        continue;
      }
      this.cursor++;
      if (!this.used.has(value)) return value;
    }
    return undefined;
  }

  private addGap(start: bigint, end: bigint): void {
    const prev = this.gaps.at(-1);
    // The cursor only moves forward, so new gaps always come after existing ones.
    if (prev && prev.end + 1n === start) prev.end = end;
    else this.gaps.push({ start, end });
  }
}

function isExcluded(value: bigint, cidr: Cidr, excluded: readonly Cidr[]): boolean {
  return excluded.some((e) => contains(e, { family: cidr.family, value }));
}
