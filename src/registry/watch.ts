// Watchers of a registry Find(watch=true). A change is encoded once and the same bytes are written to every
// watcher whose query matches, so fan-out to hundreds of watchers costs one encode plus a buffer write each.
import type { FindStream } from "../core/registrychain.js";

interface Watcher<T, R> {
  matches(item: T): boolean;
  stream: FindStream<R>;
}

export class WatchHub<T, R> {
  private readonly watchers = new Set<Watcher<T, R>>();

  constructor(private readonly encode: (item: T, deleted: boolean) => Uint8Array) {}

  /** Keeps the watcher until `signal` aborts; resolves then. */
  watch(matches: (item: T) => boolean, stream: FindStream<R>, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    const w: Watcher<T, R> = { matches, stream };
    this.watchers.add(w);
    return new Promise((resolve) => {
      signal.addEventListener(
        "abort",
        () => {
          this.watchers.delete(w);
          resolve();
        },
        { once: true },
      );
    });
  }

  notify(item: T, deleted: boolean): void {
    let bytes: Uint8Array | undefined;
    for (const w of this.watchers) {
      if (!w.matches(item)) continue;
      bytes ??= this.encode(item, deleted);
      w.stream.send(bytes);
    }
  }

  get size(): number {
    return this.watchers.size;
  }
}
