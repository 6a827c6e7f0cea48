// Persistence of the emulated config database in one JSON file, so objects, uuids and the VN id counter
// survive a restart. Writes are atomic (temporary file + rename: a crash leaves the old or the new state,
// never half of one) and coalesced: all mutations of one event-loop turn cost one write.
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { StoreSnapshot } from "./store.js";

export class StateFile {
  private scheduled: NodeJS.Immediate | undefined;
  private pending: (() => StoreSnapshot) | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly onError: (err: Error) => void,
  ) {}

  /** The saved state, or undefined when the file does not exist yet. */
  async load(): Promise<StoreSnapshot | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    let snap: unknown;
    try {
      snap = JSON.parse(text);
    } catch (err) {
      throw new Error(
        `VNC emulator state file ${this.path} is not JSON (${(err as Error).message}); fix or remove it`,
      );
    }
    if (
      typeof snap !== "object" ||
      snap === null ||
      (snap as { version?: unknown }).version !== 1 ||
      !Array.isArray((snap as { objects?: unknown }).objects)
    )
      throw new Error(
        `VNC emulator state file ${this.path} is not a version 1 state ({version: 1, objects: [...]})`,
      );
    const s = snap as StoreSnapshot;
    return {
      version: 1,
      counters: s.counters ?? {},
      objects: s.objects,
      relaxed: s.relaxed ?? [],
      useragent_kv: s.useragent_kv ?? [],
    };
  }

  /** Saves the state at the end of this event-loop turn (one write however many calls). */
  schedule(snapshot: () => StoreSnapshot): void {
    this.pending = snapshot;
    this.scheduled ??= setImmediate(() => this.writeNow());
  }

  /** Waits until everything scheduled so far is on disk. */
  async flush(): Promise<void> {
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.writeNow();
    }
    await this.writing;
  }

  private writeNow(): void {
    this.scheduled = undefined;
    const take = this.pending;
    this.pending = undefined;
    if (!take) return;
    const text = `${JSON.stringify(take())}\n`;
    this.writing = this.writing.then(() => this.writeAtomic(text)).catch((err: Error) => this.onError(err));
  }

  private async writeAtomic(text: string): Promise<void> {
    const tmp = `${this.path}.${process.pid}.tmp`;
    await mkdir(dirname(this.path), { recursive: true });
    await writeFile(tmp, text, "utf8");
    await rename(tmp, this.path);
  }
}
