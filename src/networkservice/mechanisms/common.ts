// Mechanism names and parameter keys (spec §1.9).
import { randomBytes } from "node:crypto";
import type { Mechanism } from "../../api/connection.js";

export const cls = { LOCAL: "LOCAL", REMOTE: "REMOTE" } as const;
export const types = { KERNEL: "KERNEL", VXLAN: "VXLAN", NOOP: "NOOP" } as const;
export const payloads = { ETHERNET: "ETHERNET", IP: "IP" } as const;

export const kernelParams = { name: "name", inodeURL: "inodeURL", MTU: "MTU" } as const;
export const vxlanParams = {
  srcIp: "src_ip",
  dstIp: "dst_ip",
  srcPort: "src_port",
  dstPort: "dst_port",
  vni: "vni",
  MTU: "MTU",
} as const;
export const vxlanDefaultPort = 4789;
export const ifnameMax = 15;

export function mechanism(c: string, type: string, parameters: Record<string, string> = {}): Mechanism {
  return { cls: c, type, parameters };
}

const base62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Upstream default interface name: first ≤10 chars of the service, "-", random base62 to fill 15 chars. */
export function defaultIfName(service: string): string {
  const prefix = service.replace(/[^A-Za-z0-9_.-]/g, "").slice(0, 10) || "nsm";
  const n = ifnameMax - prefix.length - 1;
  let suffix = "";
  for (let i = 0; i < n; i++) suffix += base62[randomByte() % 62];
  return `${prefix}-${suffix}`;
}

// Random bytes drawn from a pool refilled 4 KiB at a time: one randomBytes call per interface name cost ~2%
// of a forwarder's CPU per setup (a synchronous call into OpenSSL each time).
let pool = Buffer.alloc(0);
let poolAt = 0;
function randomByte(): number {
  if (poolAt >= pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  return pool[poolAt++]!;
}

export function describe(m: Mechanism): string {
  return `${m.cls}/${m.type}`;
}
