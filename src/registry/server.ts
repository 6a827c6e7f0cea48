// gRPC services of the registry (spec §1.2) over registry chains. A Find with watch=true holds a stream
// open for as long as the caller likes: each identity (callerId) may hold only so many at once.
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
  type NetworkService,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
  type NetworkServiceQuery,
} from "../api/registry.js";
import type { CallContext } from "../core/context.js";
import type { RegisteredService } from "../core/grpc.js";
import { passEncoded, serverStreamHandler, unaryHandler } from "../core/handlers.js";
import type { Logger } from "../core/log.js";
import { IdentityQuota } from "../core/quota.js";
import { callerId } from "../security/caller.js";
import type { NSChain, NSEChain } from "./types.js";

export type { NSChain, NSEChain };

/** Find-watch streams one identity may hold open on one registry service at once. */
export const defaultMaxWatchesPerIdentity = 64;

export interface RegistryServiceOptions {
  /** Default defaultMaxWatchesPerIdentity. */
  maxWatchesPerIdentity?: number;
  /**
   * Identities not limited: proxies that watch for many others (an nsmgr whose replica is not in sync passes
   * its forwarders' and endpoints' watches on to the registry as its own).
   */
  exemptWatchers?: (identity: string) => boolean;
  /** A quota shared with other services (e.g. NS and NSE together); overrides the two above. */
  watches?: IdentityQuota;
}

/** The quota of Find-watch streams per identity, for sharing between the NS and NSE services. */
export function watchQuota(
  max = defaultMaxWatchesPerIdentity,
  exempt?: (identity: string) => boolean,
): IdentityQuota {
  return new IdentityQuota(max, "open registry Find watches", "maxWatchesPerIdentity", exempt);
}

/** Runs a Find; a watch holds one of the caller's slots until it ends. */
function limited(
  quota: IdentityQuota,
  watch: boolean,
  ctx: CallContext,
  find: () => Promise<void>,
): Promise<void> {
  if (!watch || ctx.internal) return find();
  const release = quota.acquire(callerId(ctx) ?? "");
  return find().finally(release);
}

export function nseRegistryService(
  chain: NSEChain,
  log: Logger,
  opts: RegistryServiceOptions = {},
): RegisteredService {
  const def = NetworkServiceEndpointRegistryService;
  const watches = opts.watches ?? watchQuota(opts.maxWatchesPerIdentity, opts.exemptWatchers);
  return {
    name: "registry.NetworkServiceEndpointRegistry",
    definition: { ...def, find: { ...def.find, responseSerialize: passEncoded(def.find.responseSerialize) } },
    implementation: {
      register: unaryHandler(log, "nse.Register", (nse: NetworkServiceEndpoint, ctx) =>
        chain.register(nse, ctx),
      ),
      find: serverStreamHandler(log, "nse.Find", (q: NetworkServiceEndpointQuery, ctx, sink) =>
        limited(watches, q.watch, ctx, () => chain.find(q, ctx, sink)),
      ),
      unregister: unaryHandler(log, "nse.Unregister", async (nse: NetworkServiceEndpoint, ctx) => {
        await chain.unregister(nse, ctx);
        return {};
      }),
    },
  };
}

export function nsRegistryService(
  chain: NSChain,
  log: Logger,
  opts: RegistryServiceOptions = {},
): RegisteredService {
  const def = NetworkServiceRegistryService;
  const watches = opts.watches ?? watchQuota(opts.maxWatchesPerIdentity, opts.exemptWatchers);
  return {
    name: "registry.NetworkServiceRegistry",
    definition: { ...def, find: { ...def.find, responseSerialize: passEncoded(def.find.responseSerialize) } },
    implementation: {
      register: unaryHandler(log, "ns.Register", (ns: NetworkService, ctx) => chain.register(ns, ctx)),
      find: serverStreamHandler(log, "ns.Find", (q: NetworkServiceQuery, ctx, sink) =>
        limited(watches, q.watch, ctx, () => chain.find(q, ctx, sink)),
      ),
      unregister: unaryHandler(log, "ns.Unregister", async (ns: NetworkService, ctx) => {
        await chain.unregister(ns, ctx);
        return {};
      }),
    },
  };
}
