// Persistence behind the registry. The registry keeps its working set (and indexes) in memory and writes
// every change through a RegistryStore, then reloads from it at start. A store only persists; it decides
// nothing. `memory` keeps nothing (tests), `sqlite` is the durable default, `k8s` (k8s.ts) keeps records as
// custom resources that several replicas share: it reports the others' writes through `subscribe`.
import type { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";

export interface StoreChange {
  kind: "service" | "endpoint";
  name: string;
  /** The new record, or undefined when it was deleted. */
  value?: NetworkService | NetworkServiceEndpoint;
}

export interface RegistryStore {
  readonly kind: string;
  loadServices(): Promise<NetworkService[]>;
  loadEndpoints(): Promise<NetworkServiceEndpoint[]>;
  putService(ns: NetworkService): Promise<void>;
  deleteService(name: string): Promise<void>;
  putEndpoint(nse: NetworkServiceEndpoint): Promise<void>;
  deleteEndpoint(name: string): Promise<void>;
  /** Changes made by someone else (another replica); absent for single-writer stores. */
  subscribe?(listener: (change: StoreChange) => void): void;
  close(): Promise<void>;
}

export class MemoryStore implements RegistryStore {
  readonly kind = "memory";
  loadServices = (): Promise<NetworkService[]> => Promise.resolve([]);
  loadEndpoints = (): Promise<NetworkServiceEndpoint[]> => Promise.resolve([]);
  putService = (): Promise<void> => Promise.resolve();
  deleteService = (): Promise<void> => Promise.resolve();
  putEndpoint = (): Promise<void> => Promise.resolve();
  deleteEndpoint = (): Promise<void> => Promise.resolve();
  close = (): Promise<void> => Promise.resolve();
}
