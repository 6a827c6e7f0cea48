// A read replica of the registry inside nsmgr: one watch on all NetworkServices and one on all endpoints keep
// local tables current, so Finds from this node (nsmgr's own discovery, its forwarders' discover, their
// watches) are answered locally instead of costing a registry round trip each. Writes go to the registry
// first and then into the replica, so a component reads its own registration at once. While the watch is
// down (registry restart) Finds go to the registry.
import type { Logger } from "../core/log.js";
import type { CallOptions } from "../core/client.js";
import { collect } from "../core/client.js";
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
  type NetworkService,
  type NetworkServiceEndpoint,
} from "../api/registry.js";
import type { RegistryClient } from "./client.js";
import { endpoint, service } from "./client.js";
import { EndpointTable, ServiceTable, memoryNSEServer, memoryNSServer } from "./memory.js";
import { MemoryStore } from "./store/store.js";
import type { NSEServer, NSServer } from "./types.js";

const retryMs = 500;

export class RegistryReplica {
  readonly services: ServiceTable;
  readonly endpoints: EndpointTable;
  private readonly abort = new AbortController();
  private nsReady = false;
  private nseReady = false;

  constructor(
    private readonly client: RegistryClient,
    private readonly log: Logger,
  ) {
    const store = new MemoryStore();
    this.services = new ServiceTable(store);
    this.endpoints = new EndpointTable(store, log);
  }

  get ready(): boolean {
    return this.nsReady && this.nseReady;
  }

  start(): void {
    void this.follow("ns");
    void this.follow("nse");
  }

  stop(): void {
    this.abort.abort();
    this.endpoints.close();
  }

  /** Watch, then reconcile with a snapshot so records deleted while we were away disappear too. */
  private async follow(kind: "ns" | "nse"): Promise<void> {
    const opts: CallOptions = { signal: this.abort.signal };
    while (!this.abort.signal.aborted) {
      const since = Date.now();
      const seen = new Map<string, number>();
      try {
        const stream =
          kind === "ns"
            ? this.client.grpc.serverStream(
                NetworkServiceRegistryService.find,
                { networkService: service({}), watch: true },
                opts,
              )
            : this.client.grpc.serverStream(
                NetworkServiceEndpointRegistryService.find,
                { networkServiceEndpoint: endpoint({}), watch: true },
                opts,
              );
        // Handled here: if the watch fails first, nobody else would wait for this promise.
        const reconcile = this.snapshot(kind)
          .then((names) => {
            this.prune(kind, names, seen, since);
            if (kind === "ns") this.nsReady = true;
            else this.nseReady = true;
          })
          .catch(() => undefined);
        for await (const r of stream) {
          if ("networkService" in r) await this.applyService(r.networkService, r.deleted, seen);
          else await this.applyEndpoint(r.networkServiceEndpoint, r.deleted, seen);
        }
        await reconcile;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.log.warn(
          { kind, err: (err as Error).message },
          "registry watch broken: Finds go to the registry until it is back",
        );
      }
      if (kind === "ns") this.nsReady = false;
      else this.nseReady = false;
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  private async snapshot(kind: "ns" | "nse"): Promise<Set<string>> {
    const opts = { timeoutMs: 15_000, signal: this.abort.signal };
    const names =
      kind === "ns"
        ? (
            await collect(
              this.client.grpc.serverStream(
                NetworkServiceRegistryService.find,
                { networkService: service({}), watch: false },
                opts,
              ),
            )
          ).map((r) => r.networkService?.name)
        : (
            await collect(
              this.client.grpc.serverStream(
                NetworkServiceEndpointRegistryService.find,
                { networkServiceEndpoint: endpoint({}), watch: false },
                opts,
              ),
            )
          ).map((r) => r.networkServiceEndpoint?.name);
    return new Set(names.filter((n): n is string => n !== undefined));
  }

  private prune(kind: "ns" | "nse", present: Set<string>, seen: Map<string, number>, since: number): void {
    const table = kind === "ns" ? this.services : this.endpoints;
    for (const name of table.names()) {
      if (present.has(name) || (seen.get(name) ?? 0) >= since) continue;
      void (kind === "ns"
        ? this.services.delete(name)
        : this.endpoints.delete(name, "gone from the registry"));
    }
  }

  private async applyService(
    ns: NetworkService | undefined,
    deleted: boolean,
    seen: Map<string, number>,
  ): Promise<void> {
    if (!ns) return;
    seen.set(ns.name, Date.now());
    if (deleted) await this.services.delete(ns.name);
    else await this.services.put(ns);
  }

  private async applyEndpoint(
    nse: NetworkServiceEndpoint | undefined,
    deleted: boolean,
    seen: Map<string, number>,
  ): Promise<void> {
    if (!nse) return;
    seen.set(nse.name, Date.now());
    if (deleted) await this.endpoints.delete(nse.name, "deleted in the registry");
    else await this.endpoints.put(nse);
  }
}

/** Registry element over a replica: writes go upstream (`next`) then into the replica; Finds read it. */
export function replicaNSE(replica: RegistryReplica): NSEServer {
  const local = memoryNSEServer(replica.endpoints);
  return {
    name: "replica",
    async register(nse, ctx, next) {
      const stored = await next.register(nse, ctx);
      await replica.endpoints.put(stored);
      return stored;
    },
    async unregister(nse, ctx, next) {
      await next.unregister(nse, ctx);
      await replica.endpoints.delete(nse.name, "unregistered");
    },
    find: (query, ctx, stream, next) =>
      replica.ready ? local.find!(query, ctx, stream, next) : next.find(query, ctx, stream),
  };
}

export function replicaNS(replica: RegistryReplica): NSServer {
  const local = memoryNSServer(replica.services);
  return {
    name: "replica",
    async register(ns, ctx, next) {
      const stored = await next.register(ns, ctx);
      await replica.services.put(stored);
      return stored;
    },
    async unregister(ns, ctx, next) {
      await next.unregister(ns, ctx);
      await replica.services.delete(ns.name);
    },
    find: (query, ctx, stream, next) =>
      replica.ready ? local.find!(query, ctx, stream, next) : next.find(query, ctx, stream),
  };
}
