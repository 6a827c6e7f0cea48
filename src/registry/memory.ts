// The terminal registry elements (upstream: `memory`): the working set of NetworkServices and
// NetworkServiceEndpoints with their indexes, written through to a RegistryStore, expiring endpoints on
// time, and streaming Find/watch results; what other writers change in a shared store (the k8s store) comes
// in through `followStore`. Writes for one name are serialised so the store and the working
// set never disagree. A table is bounded: each identity (callerId, the direct caller) may hold only so many
// live registrations, and the table so many in all; past either a Register gets RESOURCE_EXHAUSTED.
import {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointResponse,
  NetworkServiceResponse,
} from "../api/registry.js";
import { status } from "@grpc/grpc-js";
import type { CallContext } from "../core/context.js";
import { StatusError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { IdentityQuota } from "../core/quota.js";
import { KeyedSerializer } from "../core/serialize.js";
import { callerId } from "../security/caller.js";
import { msToTimestamp, timestampToMs } from "../core/time.js";
import { matchEndpoint, matchService } from "./match.js";
import type { RegistryStore } from "./store/store.js";
import { WatchHub } from "./watch.js";
import type { NSEServer, NSServer } from "./types.js";

// setTimeout cannot wait longer than ~24.8 days; longer expirations are re-armed.
const maxTimerMs = 2 ** 31 - 1;

/** Live registrations (NSEs, or NSs) one identity may hold in a table. */
export const defaultMaxRegistrationsPerIdentity = 1000;
/** Live registrations a table holds in all. */
export const defaultMaxRegistrations = 100_000;

export interface RegistrationLimits {
  /** Per identity (default defaultMaxRegistrationsPerIdentity). */
  maxPerIdentity?: number;
  /** In all (default defaultMaxRegistrations). */
  maxTotal?: number;
  /**
   * Identities not limited per identity: proxies that register for many others (at the registry, every
   * registration through an nsmgr counts against the nsmgr). The total still applies.
   */
  exempt?: (identity: string) => boolean;
}

/**
 * Who owns the records of a table for its limits: the identity that registered each name (the direct
 * caller). Records without an owner (loaded from the store, mirrored by a replica) count only in the total.
 */
class Owners {
  private readonly byName = new Map<string, string>();
  private readonly quota: IdentityQuota;
  private readonly maxTotal: number;

  constructor(
    private readonly kind: string,
    limits: RegistrationLimits,
    private readonly size: () => number,
  ) {
    this.quota = new IdentityQuota(
      limits.maxPerIdentity ?? defaultMaxRegistrationsPerIdentity,
      `live ${kind} registrations`,
      "RegistrationLimits.maxPerIdentity",
      limits.exempt,
    );
    this.maxTotal = limits.maxTotal ?? defaultMaxRegistrations;
  }

  /**
   * Books `name` for `owner` before it is written (so concurrent Registers cannot overshoot); returns the
   * undo for a write that fails. Throws RESOURCE_EXHAUSTED past a limit.
   */
  claim(name: string, owner: string, exists: boolean): () => void {
    const prev = this.byName.get(name);
    if (prev === owner) return () => undefined;
    if (!exists && this.size() >= this.maxTotal) {
      throw new StatusError(
        status.RESOURCE_EXHAUSTED,
        `the table holds ${this.size()} ${this.kind} registrations: its limit is ${this.maxTotal} (RegistrationLimits.maxTotal)`,
      );
    }
    const release = this.quota.acquire(owner);
    this.byName.set(name, owner);
    if (prev !== undefined) this.quota.release(prev);
    return () => {
      release();
      if (prev === undefined) this.byName.delete(name);
      else {
        this.byName.set(name, prev);
        this.quota.add(prev);
      }
    };
  }

  /** The record is gone: its owner gets the slot back. */
  drop(name: string): void {
    const owner = this.byName.get(name);
    if (owner === undefined) return;
    this.byName.delete(name);
    this.quota.release(owner);
  }

  count(owner: string): number {
    return this.quota.count(owner);
  }
}

/**
 * Who a Register is counted against; undefined for calls from inside this process. A proxy (an nsmgr) registers
 * for many workloads: counting everything against the proxy would let one workload use up the quota of its
 * whole node, so a proxied registration counts against (proxy, registrant). The registrant (path_ids[0]) alone
 * is not used: it is vouched for by the proxy, not proven to us, and a caller could name a victim there.
 */
function ownerOf(ctx: CallContext, pathIds: readonly string[]): string | undefined {
  if (ctx.internal) return undefined;
  const caller = callerId(ctx) ?? "";
  const registrant = pathIds[0];
  return registrant && registrant !== caller ? `${caller} for ${registrant}` : caller;
}

export class EndpointTable {
  private readonly byName = new Map<string, NetworkServiceEndpoint>();
  private readonly byService = new Map<string, Set<string>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly serial = new KeyedSerializer();
  readonly watchers = new WatchHub<NetworkServiceEndpoint, NetworkServiceEndpointResponse>((nse, deleted) =>
    NetworkServiceEndpointResponse.encode({ networkServiceEndpoint: nse, deleted }).finish(),
  );

  private readonly owners: Owners;

  constructor(
    private readonly store: RegistryStore,
    private readonly log: Logger,
    limits: RegistrationLimits = {},
  ) {
    this.owners = new Owners("NetworkServiceEndpoint", limits, () => this.byName.size);
  }

  /** Live registrations `owner` holds here. */
  ownedBy(owner: string): number {
    return this.owners.count(owner);
  }

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

  /** Stores a registration; with an `owner` (a caller's Register) the limits apply. */
  put(nse: NetworkServiceEndpoint, owner?: string): Promise<NetworkServiceEndpoint> {
    return this.serial.run(nse.name, async () => {
      const prev = this.byName.get(nse.name);
      const stored: NetworkServiceEndpoint = {
        ...nse,
        initialRegistrationTime:
          prev?.initialRegistrationTime ?? nse.initialRegistrationTime ?? msToTimestamp(Date.now()),
      };
      const undo = owner === undefined ? undefined : this.owners.claim(nse.name, owner, prev !== undefined);
      try {
        await this.store.putEndpoint(stored);
      } catch (err) {
        undo?.();
        throw err;
      }
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
      this.owners.drop(name);
      this.log.info({ nse: name, reason }, "endpoint removed");
      this.watchers.notify(prev, true);
    });
  }

  /**
   * A change someone else made in a shared store (another replica, `kubectl delete nse`): it reaches the
   * working set, the expiry timer and watchers as a local one would, and is not written back. Nobody here
   * owns the record any more.
   */
  external(name: string, nse: NetworkServiceEndpoint | undefined): Promise<void> {
    return this.serial.run(name, () => {
      const prev = this.byName.get(name);
      this.owners.drop(name);
      if (prev) this.unindex(prev);
      if (nse) this.index(nse);
      if (nse || prev) this.watchers.notify(nse ?? prev!, !nse);
      return Promise.resolve();
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

  private readonly owners: Owners;

  constructor(
    private readonly store: RegistryStore,
    limits: RegistrationLimits = {},
  ) {
    this.owners = new Owners("NetworkService", limits, () => this.byName.size);
  }

  /** Live registrations `owner` holds here. */
  ownedBy(owner: string): number {
    return this.owners.count(owner);
  }

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

  /** Stores a registration; with an `owner` (a caller's Register) the limits apply. */
  put(ns: NetworkService, owner?: string): Promise<NetworkService> {
    return this.serial.run(ns.name, async () => {
      const exists = this.byName.has(ns.name);
      const undo = owner === undefined ? undefined : this.owners.claim(ns.name, owner, exists);
      try {
        await this.store.putService(ns);
      } catch (err) {
        undo?.();
        throw err;
      }
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
      this.owners.drop(name);
      this.watchers.notify(prev, true);
    });
  }

  /** A change someone else made in a shared store; see EndpointTable.external. */
  external(name: string, ns: NetworkService | undefined): Promise<void> {
    return this.serial.run(name, () => {
      const prev = this.byName.get(name);
      this.owners.drop(name);
      if (ns) this.byName.set(name, ns);
      else this.byName.delete(name);
      if (ns || prev) this.watchers.notify(ns ?? prev!, !ns);
      return Promise.resolve();
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

/** Keeps the tables in step with what other writers change in a shared store (one with `subscribe`). */
export function followStore(
  store: RegistryStore,
  services: ServiceTable,
  endpoints: EndpointTable,
  log: Logger,
): void {
  store.subscribe?.((change) => {
    const applied =
      change.kind === "endpoint"
        ? endpoints.external(change.name, change.value as NetworkServiceEndpoint | undefined)
        : services.external(change.name, change.value as NetworkService | undefined);
    applied.catch((err: unknown) =>
      log.error({ err, change: change.name }, "failed to apply a store change"),
    );
  });
}

export function memoryNSEServer(table: EndpointTable): NSEServer {
  return {
    name: "memory",
    register: (nse, ctx) => table.put(nse, ownerOf(ctx, nse.pathIds)),
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
    register: (ns, ctx) => table.put(ns, ownerOf(ctx, ns.pathIds)),
    unregister: (ns) => table.delete(ns.name),
    find: async (query, ctx, stream) => {
      for (const ns of table.find(query.networkService)) stream.send({ networkService: ns, deleted: false });
      if (!query.watch) return;
      const q = query.networkService;
      await table.watchers.watch((n) => matchService(q, n), stream, ctx.signal);
    },
  };
}
