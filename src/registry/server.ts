// gRPC services of the registry (spec §1.2) over registry chains.
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
  type NetworkService,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
  type NetworkServiceQuery,
} from "../api/registry.js";
import type { RegisteredService } from "../core/grpc.js";
import { passEncoded, serverStreamHandler, unaryHandler } from "../core/handlers.js";
import type { Logger } from "../core/log.js";
import type { NSChain, NSEChain } from "./types.js";

export type { NSChain, NSEChain };

export function nseRegistryService(chain: NSEChain, log: Logger): RegisteredService {
  const def = NetworkServiceEndpointRegistryService;
  return {
    name: "registry.NetworkServiceEndpointRegistry",
    definition: { ...def, find: { ...def.find, responseSerialize: passEncoded(def.find.responseSerialize) } },
    implementation: {
      register: unaryHandler(log, "nse.Register", (nse: NetworkServiceEndpoint, ctx) =>
        chain.register(nse, ctx),
      ),
      find: serverStreamHandler(log, "nse.Find", (q: NetworkServiceEndpointQuery, ctx, sink) =>
        chain.find(q, ctx, sink),
      ),
      unregister: unaryHandler(log, "nse.Unregister", async (nse: NetworkServiceEndpoint, ctx) => {
        await chain.unregister(nse, ctx);
        return {};
      }),
    },
  };
}

export function nsRegistryService(chain: NSChain, log: Logger): RegisteredService {
  const def = NetworkServiceRegistryService;
  return {
    name: "registry.NetworkServiceRegistry",
    definition: { ...def, find: { ...def.find, responseSerialize: passEncoded(def.find.responseSerialize) } },
    implementation: {
      register: unaryHandler(log, "ns.Register", (ns: NetworkService, ctx) => chain.register(ns, ctx)),
      find: serverStreamHandler(log, "ns.Find", (q: NetworkServiceQuery, ctx, sink) =>
        chain.find(q, ctx, sink),
      ),
      unregister: unaryHandler(log, "ns.Unregister", async (ns: NetworkService, ctx) => {
        await chain.unregister(ns, ctx);
        return {};
      }),
    },
  };
}
