// Registry `connect`: forwards registry calls to another registry (nsmgr → registry). Find streams are
// piped through, watch streams included, until the caller cancels.
import {
  NetworkServiceEndpointRegistryService,
  NetworkServiceRegistryService,
  type NetworkService,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
  type NetworkServiceEndpointResponse,
  type NetworkServiceQuery,
  type NetworkServiceResponse,
} from "../api/registry.js";
import type { CallContext } from "../core/context.js";
import { toStatusError, StatusError } from "../core/errors.js";
import type { RegistryServer } from "../core/registrychain.js";
import type { RegistryClient } from "./client.js";

const timeoutMs = 15_000;

function wrap(url: string, err: unknown): StatusError {
  const e = toStatusError(err);
  return new StatusError(e.code, `registry ${url}: ${e.details}`);
}

export function connectNSE(
  client: RegistryClient,
): RegistryServer<NetworkServiceEndpoint, NetworkServiceEndpointQuery, NetworkServiceEndpointResponse> {
  return {
    name: "connect",
    register: (nse, ctx) =>
      client
        .registerEndpoint(nse, { timeoutMs, signal: ctx.signal })
        .catch((e: unknown) => Promise.reject(wrap(client.grpc.url, e))),
    unregister: (nse, ctx) =>
      client
        .unregisterEndpoint(nse, { timeoutMs, signal: ctx.signal })
        .catch((e: unknown) => Promise.reject(wrap(client.grpc.url, e))),
    find: async (query, ctx, stream) => {
      const s = client.grpc.serverStream(findNSE, query, {
        signal: ctx.signal,
        timeoutMs: query.watch ? undefined : timeoutMs,
      });
      await pipe(s, ctx, (r) => stream.send(r), client.grpc.url);
    },
  };
}

export function connectNS(
  client: RegistryClient,
): RegistryServer<NetworkService, NetworkServiceQuery, NetworkServiceResponse> {
  return {
    name: "connect",
    register: (ns, ctx) =>
      client
        .registerService(ns, { timeoutMs, signal: ctx.signal })
        .catch((e: unknown) => Promise.reject(wrap(client.grpc.url, e))),
    unregister: (ns, ctx) =>
      client
        .unregisterService(ns.name, { timeoutMs, signal: ctx.signal })
        .catch((e: unknown) => Promise.reject(wrap(client.grpc.url, e))),
    find: async (query, ctx, stream) => {
      const s = client.grpc.serverStream(findNS, query, {
        signal: ctx.signal,
        timeoutMs: query.watch ? undefined : timeoutMs,
      });
      await pipe(s, ctx, (r) => stream.send(r), client.grpc.url);
    },
  };
}

async function pipe<T>(
  s: AsyncIterable<T>,
  ctx: CallContext,
  send: (r: T) => void,
  url: string,
): Promise<void> {
  try {
    for await (const r of s) send(r);
  } catch (err) {
    if (ctx.signal.aborted) return;
    throw wrap(url, err);
  }
}

const findNSE = NetworkServiceEndpointRegistryService.find;
const findNS = NetworkServiceRegistryService.find;
