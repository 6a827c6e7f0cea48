// Registry client: what the CLI, the tests and (later) nsmgr use to talk to a registry.

import type { ChannelCredentials, ChannelOptions } from "@grpc/grpc-js";
import {
  NetworkServiceEndpointRegistryService as NSE,
  NetworkServiceRegistryService as NS,
  type NetworkService,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointResponse,
  type NetworkServiceResponse,
} from "../api/registry.js";
import { GrpcClient, collect, type CallOptions, type ServerStream } from "../core/client.js";

export class RegistryClient {
  readonly grpc: GrpcClient;

  constructor(url: string, credentials?: ChannelCredentials, options?: ChannelOptions) {
    this.grpc = new GrpcClient(url, options, credentials);
  }

  async registerEndpoint(nse: NetworkServiceEndpoint, opts?: CallOptions): Promise<NetworkServiceEndpoint> {
    return (await this.grpc.unary(NSE.register, nse, opts)).response;
  }

  async unregisterEndpoint(
    nse: Partial<NetworkServiceEndpoint> & { name: string },
    opts?: CallOptions,
  ): Promise<void> {
    await this.grpc.unary(NSE.unregister, endpoint(nse), opts);
  }

  /** Current matches (watch=false). */
  async findEndpoints(
    query: Partial<NetworkServiceEndpoint> = {},
    opts: CallOptions = {},
  ): Promise<NetworkServiceEndpoint[]> {
    const s = this.grpc.serverStream(
      NSE.find,
      { networkServiceEndpoint: endpoint(query), watch: false },
      { timeoutMs: 15_000, ...opts },
    );
    return (await collect(s)).filter((r) => !r.deleted).map((r) => r.networkServiceEndpoint!);
  }

  /** Current matches, then every change until cancelled. */
  watchEndpoints(
    query: Partial<NetworkServiceEndpoint> = {},
    opts: CallOptions = {},
  ): ServerStream<NetworkServiceEndpointResponse> {
    return this.grpc.serverStream(NSE.find, { networkServiceEndpoint: endpoint(query), watch: true }, opts);
  }

  async registerService(ns: NetworkService, opts?: CallOptions): Promise<NetworkService> {
    return (await this.grpc.unary(NS.register, ns, opts)).response;
  }

  async unregisterService(name: string, opts?: CallOptions): Promise<void> {
    await this.grpc.unary(NS.unregister, service({ name }), opts);
  }

  async findServices(query: Partial<NetworkService> = {}, opts: CallOptions = {}): Promise<NetworkService[]> {
    const s = this.grpc.serverStream(
      NS.find,
      { networkService: service(query), watch: false },
      { timeoutMs: 15_000, ...opts },
    );
    return (await collect(s)).filter((r) => !r.deleted).map((r) => r.networkService!);
  }

  watchServices(
    query: Partial<NetworkService> = {},
    opts: CallOptions = {},
  ): ServerStream<NetworkServiceResponse> {
    return this.grpc.serverStream(NS.find, { networkService: service(query), watch: true }, opts);
  }

  close(): void {
    this.grpc.close();
  }
}

export function endpoint(p: Partial<NetworkServiceEndpoint>): NetworkServiceEndpoint {
  return {
    name: "",
    networkServiceNames: [],
    networkServiceLabels: {},
    url: "",
    expirationTime: undefined,
    initialRegistrationTime: undefined,
    pathIds: [],
    ...p,
  };
}

export function service(p: Partial<NetworkService>): NetworkService {
  return { name: "", payload: "", matches: [], pathIds: [], ...p };
}
