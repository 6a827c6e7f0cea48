// The two registry chain shapes, named once.
import type {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse,
  NetworkServiceQuery,
  NetworkServiceResponse,
} from "../api/registry.js";
import type { RegistryNext, RegistryServer } from "../core/registrychain.js";

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
