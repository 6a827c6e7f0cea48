// Retry delays for the dashboard's watches: quick at first (a restarting nsmgr is back within a second),
// doubling to a ceiling so a component that stays away costs one attempt every few seconds.
export class Backoff {
  private next: number;

  constructor(
    private readonly firstMs = 250,
    private readonly maxMs = 5_000,
  ) {
    this.next = firstMs;
  }

  /** The delay before the next attempt; each call doubles the one after, up to the ceiling. */
  delay(): number {
    const d = this.next;
    this.next = Math.min(this.next * 2, this.maxMs);
    return d;
  }

  /** After a success: the next failure retries quickly again. */
  reset(): void {
    this.next = this.firstMs;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
