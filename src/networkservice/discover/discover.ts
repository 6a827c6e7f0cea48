// `discover` (forwarder): finds the endpoints that may serve this connection (spec §2.3 step 4). With an
// endpoint name already set (refresh, or a remote nsmgr forwarding for a chosen NSE) it resolves that one;
// otherwise it applies the service's matches to the client's labels.
import type { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";
import { notFound } from "../../core/errors.js";
import { liveEndpoints, selectEndpoints } from "../../registry/selector.js";
import { setClientUrl } from "../clienturl/clienturl.js";

export interface EndpointSource {
  findService(name: string): Promise<NetworkService | undefined>;
  findEndpoints(query: Partial<NetworkServiceEndpoint>): Promise<NetworkServiceEndpoint[]>;
}

const candidatesKey = Symbol("discover.candidates");

export function candidates(ctx: CallContext): NetworkServiceEndpoint[] {
  return ctx.get<NetworkServiceEndpoint[]>(candidatesKey) ?? [];
}

export function discoverServer(source: EndpointSource): NetworkServiceElement {
  return {
    name: "discover",
    async request(req, ctx, next) {
      const conn = req.connection!;
      if (conn.networkServiceEndpointName) {
        const found = liveEndpoints(await source.findEndpoints({ name: conn.networkServiceEndpointName }));
        if (found.length === 0)
          throw notFound(`network service endpoint "${conn.networkServiceEndpointName}" not found`);
        ctx.set(candidatesKey, found);
        if (conn.payload === "")
          conn.payload = (await source.findService(conn.networkService))?.payload ?? "";
        return next.request(req, ctx);
      }
      const ns = await source.findService(conn.networkService);
      if (!ns) throw notFound(`network service "${conn.networkService}" not found`);
      conn.payload = ns.payload;
      const all = liveEndpoints(await source.findEndpoints({ networkServiceNames: [ns.name] }));
      const chosen = selectEndpoints(ns, conn.labels, all);
      if (chosen.length === 0) {
        throw notFound(
          `no endpoint of network service "${ns.name}" matches the client labels ${JSON.stringify(conn.labels)} (${all.length} registered)`,
        );
      }
      ctx.set(candidatesKey, chosen);
      return next.request(req, ctx);
    },
    async close(conn, ctx, next) {
      // After a restart this hop no longer knows where the connection went: look the endpoint up by name.
      if (conn.networkServiceEndpointName) {
        const [nse] = await source.findEndpoints({ name: conn.networkServiceEndpointName }).catch(() => []);
        if (nse) setClientUrl(ctx, nse.url);
      }
      return next.close(conn, ctx);
    },
  };
}
