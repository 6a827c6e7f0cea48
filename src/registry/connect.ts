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
import type { Metadata } from "@grpc/grpc-js";
import type { CallContext } from "../core/context.js";
import { toStatusError, StatusError } from "../core/errors.js";
import type { RegistryServer } from "../core/registrychain.js";
import type { RegistryClient } from "./client.js";

const timeoutMs = 15_000;

/** Per-call metadata for the upstream registry (tokens, proxied path). */
export type RegistryMetadata = (ctx: CallContext) => Promise<Metadata | undefined>;

function wrap(url: string, err: unknown): StatusError {
  const e = toStatusError(err);
  return new StatusError(e.code, `registry ${url}: ${e.details}`);
}

const noMetadata: RegistryMetadata = () => Promise.resolve(undefined);

export function connectNSE(
  client: RegistryClient,
  md: RegistryMetadata = noMetadata,
): RegistryServer<NetworkServiceEndpoint, NetworkServiceEndpointQuery, NetworkServiceEndpointResponse> {
  const url = client.grpc.url;
  return {
    name: "connect",
    register: async (nse, ctx) =>
      client
        .registerEndpoint(nse, { timeoutMs, signal: ctx.signal, metadata: await md(ctx) })
        .catch(rethrow(url)),
    unregister: async (nse, ctx) =>
      client
        .unregisterEndpoint(nse, { timeoutMs, signal: ctx.signal, metadata: await md(ctx) })
        .catch(rethrow(url)),
    find: async (query, ctx, stream) => {
      const timeout = query.watch ? undefined : timeoutMs;
      const s = client.grpc.serverStream(findNSE, query, { signal: ctx.signal, timeoutMs: timeout });
      await pipe(s, ctx, (r) => stream.send(r), url);
    },
  };
}

export function connectNS(
  client: RegistryClient,
  md: RegistryMetadata = noMetadata,
): RegistryServer<NetworkService, NetworkServiceQuery, NetworkServiceResponse> {
  const url = client.grpc.url;
  return {
    name: "connect",
    register: async (ns, ctx) =>
      client
        .registerService(ns, { timeoutMs, signal: ctx.signal, metadata: await md(ctx) })
        .catch(rethrow(url)),
    unregister: async (ns, ctx) =>
      client
        .unregisterService(ns.name, { timeoutMs, signal: ctx.signal, metadata: await md(ctx) })
        .catch(rethrow(url)),
    find: async (query, ctx, stream) => {
      const timeout = query.watch ? undefined : timeoutMs;
      const s = client.grpc.serverStream(findNS, query, { signal: ctx.signal, timeoutMs: timeout });
      await pipe(s, ctx, (r) => stream.send(r), url);
    },
  };
}

function rethrow(url: string): (e: unknown) => never {
  return (e) => {
    throw wrap(url, e);
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
