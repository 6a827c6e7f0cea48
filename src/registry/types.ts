// The two registry chain shapes, named once, and a builder for each.
import type {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse,
  NetworkServiceQuery,
  NetworkServiceResponse,
} from "../api/registry.js";
import { registryChain, type RegistryNext, type RegistryServer } from "../core/registrychain.js";

export type NSEServer = RegistryServer<
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse
>;
export type NSServer = RegistryServer<NetworkService, NetworkServiceQuery, NetworkServiceResponse>;
export type NSEChain = RegistryNext<
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse
>;
export type NSChain = RegistryNext<NetworkService, NetworkServiceQuery, NetworkServiceResponse>;

/** A NetworkServiceEndpoint registry chain: `registryChain` with the types filled in. */
export function nseRegistryChain(elements: NSEServer[]): NSEChain {
  return registryChain(elements);
}

/** A NetworkService registry chain: `registryChain` with the types filled in. */
export function nsRegistryChain(elements: NSServer[]): NSChain {
  return registryChain(elements);
}
