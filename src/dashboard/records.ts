// What the registries say, read for the dashboard: live records merged across registries (one per cloud), and
// who registered each. A forwarder or endpoint registers through its nsmgr, so its record carries the nsmgr's
// public URL, the nsmgr's NODE_NAME as the nodeName label (clientinfo), and path ids
// [itself, its nsmgr, the registry] — the nsmgr's SPIFFE ID second.
import type { NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import { timestampToMs } from "../core/time.js";
import type { WatchStatus } from "./types.js";

export interface RegistrySnapshot {
  url: string;
  status: WatchStatus;
  error?: string;
  endpoints: NetworkServiceEndpoint[];
  services: NetworkService[];
}

export interface Records {
  endpoints: NetworkServiceEndpoint[];
  services: NetworkService[];
}

/** An nsmgr as the registry knows it: through the records registered through it. */
export interface RegisteredNsmgr {
  name: string;
  publicUrl: string;
  node?: string;
}

/** Live records of every registry, one per name (the first registry's wins), expired ones left out. */
export function mergeRecords(registries: RegistrySnapshot[], now: number): Records {
  const endpoints = new Map<string, NetworkServiceEndpoint>();
  const services = new Map<string, NetworkService>();
  for (const r of registries) {
    for (const e of r.endpoints) {
      const expired = e.expirationTime !== undefined && timestampToMs(e.expirationTime) <= now;
      if (!expired && !endpoints.has(e.name)) endpoints.set(e.name, e);
    }
    for (const s of r.services) if (!services.has(s.name)) services.set(s.name, s);
  }
  return { endpoints: [...endpoints.values()], services: [...services.values()] };
}

/** The last path element of a SPIFFE ID (spiffe://td/nsmgr-a1 → nsmgr-a1): how our components name themselves. */
export function spiffeName(id: string): string {
  const m = /^spiffe:\/\/[^/]+\/(.+)$/.exec(id);
  return m ? m[1]!.split("/").at(-1)! : id;
}

/** The nsmgr a record was registered through, by name; undefined for a record registered directly. */
export function registrarOf(nse: NetworkServiceEndpoint): string | undefined {
  return nse.pathIds.length >= 3 ? spiffeName(nse.pathIds[1]!) : undefined;
}

/** The nodeName label of any of the record's services. */
export function nodeNameOf(nse: NetworkServiceEndpoint): string | undefined {
  for (const l of Object.values(nse.networkServiceLabels)) if (l.labels.nodeName) return l.labels.nodeName;
  return undefined;
}

/** Every nsmgr that registered something, with its public URL and node. */
export function registeredNsmgrs(endpoints: NetworkServiceEndpoint[]): RegisteredNsmgr[] {
  const out = new Map<string, RegisteredNsmgr>();
  for (const e of endpoints) {
    const name = registrarOf(e);
    if (name === undefined || e.url === "") continue;
    const known = out.get(name);
    const node = known?.node ?? nodeNameOf(e);
    out.set(name, { name, publicUrl: known?.publicUrl ?? e.url, ...(node ? { node } : {}) });
  }
  return [...out.values()];
}

/** All labels of a record, every service's merged (the first service's value wins). */
export function labelsOf(nse: NetworkServiceEndpoint): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of nse.networkServiceNames)
    for (const [k, v] of Object.entries(nse.networkServiceLabels[s]?.labels ?? {})) out[k] ??= v;
  return out;
}

export function expiresOf(nse: NetworkServiceEndpoint): string | undefined {
  return nse.expirationTime ? new Date(timestampToMs(nse.expirationTime)).toISOString() : undefined;
}
