// `netsvcmonitor` (nsmgr, spec §3.1): while a connection lives, watch its NetworkService; when the service
// changes so that the connection's endpoint no longer matches the client, close the connection so the
// client heals onto a matching endpoint. One watch per service, shared by all its connections.
import type { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { Logger } from "../../core/log.js";
import { selectEndpoints } from "../../registry/selector.js";
import { eventFactory, type EventFactory } from "../begin/begin.js";

export interface ServiceWatchSource {
  /** Streams the service's current record, then every change (deleted = true on removal), until aborted. */
  watchService(name: string, signal: AbortSignal, onChange: (ns: NetworkService | undefined) => void): void;
  findEndpoint(name: string): Promise<NetworkServiceEndpoint | undefined>;
}

interface Watched {
  endpoint: string;
  labels: Record<string, string>;
  events: EventFactory;
}

const watchedKey = Symbol("netsvcmonitor.id");

export function netsvcMonitorServer(source: ServiceWatchSource, log: Logger): NetworkServiceElement {
  const byService = new Map<string, { abort: AbortController; conns: Map<string, Watched> }>();

  const check = async (service: string, ns: NetworkService | undefined): Promise<void> => {
    const entry = byService.get(service);
    if (!entry) return;
    for (const [id, w] of entry.conns) {
      const nse = await source.findEndpoint(w.endpoint).catch(() => undefined);
      // A record that vanished is a registry restart or an endpoint going (heal's business), not a change of
      // the service: act only on records that exist and no longer match.
      if (ns === undefined || nse === undefined) continue;
      if (selectEndpoints(ns, w.labels, [nse]).length > 0) continue;
      log.info(
        { connId: id, service, endpoint: w.endpoint },
        "network service changed: endpoint no longer matches, closing",
      );
      entry.conns.delete(id);
      w.events.close().catch((err: unknown) => log.warn({ connId: id, err }, "netsvcmonitor close failed"));
    }
    if (entry.conns.size === 0) stop(service);
  };

  const forget = (w: { id: string; service: string }): void => {
    const entry = byService.get(w.service);
    if (!entry) return;
    entry.conns.delete(w.id);
    if (entry.conns.size === 0) stop(w.service);
  };

  const stop = (service: string): void => {
    byService.get(service)?.abort.abort();
    byService.delete(service);
  };

  return {
    name: "netsvcmonitor",
    async request(req, ctx, next) {
      const out = await next.request(req, ctx);
      const events = eventFactory(ctx);
      if (!events || !out.networkServiceEndpointName) return out;
      const service = out.networkService;
      let entry = byService.get(service);
      if (!entry) {
        const abort = new AbortController();
        byService.set(service, (entry = { abort, conns: new Map() }));
        let first = true;
        source.watchService(service, abort.signal, (ns) => {
          if (first) return void (first = false); // the state we just matched against
          void check(service, ns);
        });
      }
      const before = ctx.connMeta().get(watchedKey) as { id: string; service: string } | undefined;
      if (before && before.service !== service) forget(before);
      entry.conns.set(out.id, { endpoint: out.networkServiceEndpointName, labels: out.labels, events });
      ctx.connMeta().set(watchedKey, { id: out.id, service });
      return out;
    },
    async close(conn, ctx, next) {
      const watched = ctx.connMeta().get(watchedKey) as { id: string; service: string } | undefined;
      if (watched) forget(watched);
      return next.close(conn, ctx);
    },
  };
}
