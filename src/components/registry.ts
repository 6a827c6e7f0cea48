// `nsm registry`: the NetworkService and NetworkServiceEndpoint registries (spec §4), one process.
// The chains, top to bottom, are what a request goes through.
import { hostname } from "node:os";
import { NsmServer } from "../core/grpc.js";
import { componentLogger } from "../core/log.js";
import { expire, setPayload, validateNS, validateNSE } from "../registry/elements.js";
import {
  EndpointTable,
  ServiceTable,
  followStore,
  memoryNSEServer,
  memoryNSServer,
} from "../registry/memory.js";
import { nsRegistryService, nseRegistryService, type NSChain, type NSEChain } from "../registry/server.js";
import { nsRegistryChain, nseRegistryChain } from "../registry/types.js";
import { MemoryStore, type RegistryStore } from "../registry/store/store.js";
import { SqliteStore } from "../registry/store/sqlite.js";
import { updatePathServer } from "../registry/updatepath.js";
import { metricsNS, metricsNSE } from "../registry/metrics.js";
import { trackRecords } from "../registry/records.js";
import { authorizeRegistry, updateTokenRegistry } from "../registry/security.js";
import type { Security } from "./security.js";

export interface RegistryOptions {
  name?: string;
  listenOn: string[];
  store: "sqlite" | "memory" | "k8s";
  /** sqlite database file (store=sqlite). */
  dbPath?: string;
  /** Namespace of the custom resources (store=k8s; default "default", as upstream). */
  namespace?: string;
  /** kubeconfig file (store=k8s); default: in-cluster, else KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** Default and maximum NSE registration lifetime. */
  expirePeriodMs: number;
  /** Identity, tokens and transport (`createSecurity`: an SVID, or explicitly insecure). */
  security: Security;
}

export const registryDefaults = {
  listenOn: "tcp://:5002",
  dbPath: "/var/lib/networkservicemesh/registry.db",
  expirePeriodMs: 60_000,
};

export interface RunningRegistry {
  urls: string[];
  endpoints: EndpointTable;
  services: ServiceTable;
  stop(): Promise<void>;
}

export async function startRegistry(opts: RegistryOptions): Promise<RunningRegistry> {
  const name = opts.name ?? `registry-${hostname()}`;
  const log = componentLogger("registry", name);
  // The Kubernetes client is loaded only for the k8s store: imported at start it cost every nsm-ts process
  // (they all import this file) ~70 MB of memory and hundreds of files read.
  const store: RegistryStore =
    opts.store === "memory"
      ? new MemoryStore()
      : opts.store === "k8s"
        ? new (await import("../registry/store/k8s.js")).K8sStore({
            namespace: opts.namespace,
            kubeconfig: opts.kubeconfig,
            log,
          })
        : new SqliteStore(opts.dbPath ?? registryDefaults.dbPath);

  const security = opts.security;
  const limits = security.limits;
  const services = new ServiceTable(store, limits.registrations);
  const endpoints = new EndpointTable(store, log, limits.registrations);
  try {
    await services.load();
    await endpoints.load();
  } catch (err) {
    await store.close();
    throw err;
  }
  followStore(store, services, endpoints, log);

  const sign = security.sign;
  const nsChain: NSChain = nsRegistryChain([
    metricsNS("registry"),
    validateNS(),
    updatePathServer(name),
    updateTokenRegistry(sign, security.insecure, () => security.identity.caPem),
    authorizeRegistry((n) => services.get(n)?.pathIds),
    setPayload(),
    memoryNSServer(services),
  ]);
  const nseChain: NSEChain = nseRegistryChain([
    metricsNSE("registry"),
    validateNSE(),
    updatePathServer(name),
    updateTokenRegistry(sign, security.insecure, () => security.identity.caPem),
    authorizeRegistry((n) => endpoints.get(n)?.pathIds),
    expire(opts.expirePeriodMs),
    memoryNSEServer(endpoints),
  ]);

  const server = new NsmServer(
    [nsRegistryService(nsChain, log, limits.registry), nseRegistryService(nseChain, log, limits.registry)],
    security.serverCredentials(),
    limits.server,
  );
  const urls: string[] = [];
  try {
    for (const url of opts.listenOn) urls.push(await server.listen(url));
  } catch (err) {
    await server.stop(0);
    await store.close();
    throw err;
  }
  const untrack = trackRecords({
    component: "registry",
    services: () => services.size,
    endpoints: () => endpoints.size,
  });
  log.info(
    { urls, store: store.kind, services: services.size, endpoints: endpoints.size },
    "registry serving",
  );

  return {
    urls,
    endpoints,
    services,
    async stop() {
      await server.stop();
      untrack();
      endpoints.close();
      await store.close();
      log.info("registry stopped");
    },
  };
}
