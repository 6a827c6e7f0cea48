// Registry `localbypass` (nsmgr, spec §4.1): endpoints and forwarders that register through this nsmgr are
// stored in the registry with the nsmgr's public URL (so other nodes reach them through it), while this
// nsmgr remembers their real local URL. Finds through this nsmgr get local records back with their real
// URL, and stale records carrying our URL that we no longer know are dropped.
import {
  NetworkServiceEndpointResponse,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
} from "../api/registry.js";
import { asMessage, type RegistryServer } from "../core/registrychain.js";
import { timestampToMs } from "../core/time.js";

export class LocalEndpoints {
  private readonly local = new Map<string, NetworkServiceEndpoint>();
  /** Registrations the registry has not answered yet: known to Find filtering, never offered to Requests. */
  private readonly pending = new Map<string, NetworkServiceEndpoint>();

  /** Marks `nse` as being registered (see `pending`). */
  expect(nse: NetworkServiceEndpoint): void {
    this.pending.set(nse.name, nse);
  }

  settle(name: string): void {
    this.pending.delete(name);
  }

  /** The real URL of a record of ours: registered, or being registered. */
  urlOf(name: string): string | undefined {
    return (this.get(name) ?? this.pending.get(name))?.url;
  }

  /** The stored record with its real URL. */
  remember(nse: NetworkServiceEndpoint): void {
    this.local.set(nse.name, nse);
  }

  forget(name: string): void {
    this.local.delete(name);
  }

  get(name: string): NetworkServiceEndpoint | undefined {
    const n = this.local.get(name);
    if (n?.expirationTime && timestampToMs(n.expirationTime) <= Date.now()) {
      this.local.delete(name);
      return undefined;
    }
    return n;
  }

  /** Live local records offering `service`. */
  ofService(service: string): NetworkServiceEndpoint[] {
    return [...this.local.keys()].flatMap((name) => {
      const n = this.get(name);
      return n && n.networkServiceNames.includes(service) ? [n] : [];
    });
  }
}

export function localBypassNSE(
  table: LocalEndpoints,
  publicUrl: () => string,
): RegistryServer<NetworkServiceEndpoint, NetworkServiceEndpointQuery, NetworkServiceEndpointResponse> {
  return {
    name: "localbypass",
    async register(nse, ctx, next) {
      const realUrl = nse.url;
      // Pending until the registry answers: the watch event of this registration can reach this nsmgr's
      // watchers (its forwarders' replicas) before `next.register` returns, and must not be dropped as stale;
      // but only what the registry accepted is recorded and offered to Requests.
      table.expect(nse);
      let stored: NetworkServiceEndpoint;
      try {
        stored = await next.register({ ...nse, url: publicUrl() }, ctx);
      } finally {
        table.settle(nse.name);
      }
      const local = { ...stored, url: realUrl };
      table.remember(local);
      return local;
    },
    async unregister(nse, ctx, next) {
      // Forget only what the registry let go of: a refused Unregister must not hide a live endpoint.
      await next.unregister({ ...nse, url: publicUrl() }, ctx);
      table.forget(nse.name);
    },
    find(query, ctx, stream, next) {
      return next.find(query, ctx, {
        send(raw) {
          const resp = asMessage(raw, NetworkServiceEndpointResponse);
          const nse = resp.networkServiceEndpoint;
          if (!nse || nse.url !== publicUrl()) return stream.send(resp);
          const url = table.urlOf(nse.name);
          if (url) stream.send({ ...resp, networkServiceEndpoint: { ...nse, url } });
          else if (resp.deleted) stream.send(resp);
          // else: a record of ours from a previous incarnation that nobody re-registered: stale, drop it.
        },
      });
    },
  };
}
