// The terminal registry elements (upstream: `memory`): the working set of NetworkServices and
// NetworkServiceEndpoints with their indexes, written through to a RegistryStore, expiring endpoints on
// time, and streaming Find/watch results. Writes for one name are serialised so the store and the working
// set never disagree.
import {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointResponse,
  NetworkServiceResponse,
} from "../api/registry.js";
import type { Logger } from "../core/log.js";
import { KeyedSerializer } from "../core/serialize.js";
import { msToTimestamp, timestampToMs } from "../core/time.js";
import { matchEndpoint, matchService } from "./match.js";
import type { RegistryStore } from "./store/store.js";
import { WatchHub } from "./watch.js";
import type { NSEServer, NSServer } from "./types.js";

// setTimeout cannot wait longer than ~24.8 days; longer expirations are re-armed.
const maxTimerMs = 2 ** 31 - 1;

export class EndpointTable {
  private readonly byName = new Map<string, NetworkServiceEndpoint>();
  private readonly byService = new Map<string, Set<string>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly serial = new KeyedSerializer();
  readonly watchers = new WatchHub<NetworkServiceEndpoint, NetworkServiceEndpointResponse>((nse, deleted) =>
    NetworkServiceEndpointResponse.encode({ networkServiceEndpoint: nse, deleted }).finish(),
  );

  constructor(
    private readonly store: RegistryStore,
    private readonly log: Logger,
  ) {}

  /** Loads persisted endpoints; those already expired are deleted instead. */
  async load(): Promise<void> {
    const now = Date.now();
    for (const nse of await this.store.loadEndpoints()) {
      if (nse.expirationTime && timestampToMs(nse.expirationTime) <= now) {
        await this.store.deleteEndpoint(nse.name);
        continue;
      }
      this.index(nse);
    }
  }

  get(name: string): NetworkServiceEndpoint | undefined {
    return this.byName.get(name);
  }

  get size(): number {
    return this.byName.size;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  put(nse: NetworkServiceEndpoint): Promise<NetworkServiceEndpoint> {
    return this.serial.run(nse.name, async () => {
      const prev = this.byName.get(nse.name);
      const stored: NetworkServiceEndpoint = {
        ...nse,
        initialRegistrationTime:
          prev?.initialRegistrationTime ?? nse.initialRegistrationTime ?? msToTimestamp(Date.now()),
      };
      await this.store.putEndpoint(stored);
      if (prev) this.unindex(prev);
      this.index(stored);
      this.watchers.notify(stored, false);
      return stored;
    });
  }

  delete(name: string, reason: string): Promise<void> {
    return this.serial.run(name, async () => {
      const prev = this.byName.get(name);
      if (!prev) return;
      await this.store.deleteEndpoint(name);
      this.unindex(prev);
      this.log.info({ nse: name, reason }, "endpoint removed");
      this.watchers.notify(prev, true);
    });
  }

  /** Current records matching the query, using the name or service index when the query allows. */
  find(query: NetworkServiceEndpoint | undefined): NetworkServiceEndpoint[] {
    const out: NetworkServiceEndpoint[] = [];
    const now = Date.now();
    const live = (n: NetworkServiceEndpoint): boolean =>
      !n.expirationTime || timestampToMs(n.expirationTime) > now;
    if (query?.name) {
      const n = this.byName.get(query.name);
      if (n && live(n) && matchEndpoint(query, n)) out.push(n);
      return out;
    }
    let names: Iterable<string> = this.byName.keys();
    if (query && query.networkServiceNames.length > 0) {
      let smallest: Set<string> | undefined;
      for (const s of query.networkServiceNames) {
        const set = this.byService.get(s);
        if (!set) return out;
        if (!smallest || set.size < smallest.size) smallest = set;
      }
      names = smallest!;
    }
    for (const name of names) {
      const n = this.byName.get(name)!;
      if (live(n) && matchEndpoint(query, n)) out.push(n);
    }
    return out;
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private index(nse: NetworkServiceEndpoint): void {
    this.byName.set(nse.name, nse);
    for (const s of nse.networkServiceNames) {
      let set = this.byService.get(s);
      if (!set) this.byService.set(s, (set = new Set()));
      set.add(nse.name);
    }
    this.arm(nse);
  }

  private unindex(nse: NetworkServiceEndpoint): void {
    this.byName.delete(nse.name);
    for (const s of nse.networkServiceNames) {
      const set = this.byService.get(s);
      set?.delete(nse.name);
      if (set?.size === 0) this.byService.delete(s);
    }
    const t = this.timers.get(nse.name);
    if (t) clearTimeout(t);
    this.timers.delete(nse.name);
  }

  private arm(nse: NetworkServiceEndpoint): void {
    if (!nse.expirationTime) return;
    const at = timestampToMs(nse.expirationTime);
    const delay = Math.max(0, at - Date.now());
    const timer = setTimeout(
      () => {
        this.timers.delete(nse.name);
        if (this.byName.get(nse.name) !== nse) return;
        if (delay >= maxTimerMs) return this.arm(nse);
        this.delete(nse.name, "expired").catch((err: unknown) =>
          this.log.error({ nse: nse.name, err }, "failed to remove expired endpoint"),
        );
      },
      Math.min(delay, maxTimerMs),
    );
    timer.unref();
    this.timers.set(nse.name, timer);
  }
}

export class ServiceTable {
  private readonly byName = new Map<string, NetworkService>();
  private readonly serial = new KeyedSerializer();
  readonly watchers = new WatchHub<NetworkService, NetworkServiceResponse>((ns, deleted) =>
    NetworkServiceResponse.encode({ networkService: ns, deleted }).finish(),
  );

  constructor(private readonly store: RegistryStore) {}

  async load(): Promise<void> {
    for (const ns of await this.store.loadServices()) this.byName.set(ns.name, ns);
  }

  get size(): number {
    return this.byName.size;
  }

  get(name: string): NetworkService | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  put(ns: NetworkService): Promise<NetworkService> {
    return this.serial.run(ns.name, async () => {
      await this.store.putService(ns);
      this.byName.set(ns.name, ns);
      this.watchers.notify(ns, false);
      return ns;
    });
  }

  delete(name: string): Promise<void> {
    return this.serial.run(name, async () => {
      const prev = this.byName.get(name);
      if (!prev) return;
      await this.store.deleteService(name);
      this.byName.delete(name);
      this.watchers.notify(prev, true);
    });
  }

  find(query: NetworkService | undefined): NetworkService[] {
    if (query?.name) {
      const ns = this.byName.get(query.name);
      return ns && matchService(query, ns) ? [ns] : [];
    }
    return [...this.byName.values()].filter((ns) => matchService(query, ns));
  }
}

export function memoryNSEServer(table: EndpointTable): NSEServer {
  return {
    name: "memory",
    register: (nse) => table.put(nse),
    unregister: (nse) => table.delete(nse.name, "unregistered"),
    find: async (query, ctx, stream) => {
      for (const nse of table.find(query.networkServiceEndpoint))
        stream.send({ networkServiceEndpoint: nse, deleted: false });
      if (!query.watch) return;
      const q = query.networkServiceEndpoint;
      await table.watchers.watch((n) => matchEndpoint(q, n), stream, ctx.signal);
    },
  };
}

export function memoryNSServer(table: ServiceTable): NSServer {
  return {
    name: "memory",
    register: (ns) => table.put(ns),
    unregister: (ns) => table.delete(ns.name),
    find: async (query, ctx, stream) => {
      for (const ns of table.find(query.networkService)) stream.send({ networkService: ns, deleted: false });
      if (!query.watch) return;
      const q = query.networkService;
      await table.watchers.watch((n) => matchService(q, n), stream, ctx.signal);
    },
  };
}
