// IPv4 subnet arithmetic for the emulated address manager (the real one is vnc_addr_mgmt.py): filling the
// server defaults of an IpamSubnetType (subnet_uuid, gateway = last-1, DNS = last-2, or .1/.2 with
// addr_from_start), and picking a free address top-down (or bottom-up with addr_from_start), skipping the
// network, broadcast, gateway and DNS addresses. IPv6 subnets are refused with a 400 that says so.
import { randomUUID } from "node:crypto";
import { badRequest, show } from "./errors.js";

export interface Subnet {
  uuid: string;
  /** `10.0.0.0/24`, as the real server prints subnets in its error texts. */
  cidr: string;
  network: number;
  broadcast: number;
  gateway?: number;
  dns?: number;
  pools: { start: number; end: number }[];
  addrFromStart: boolean;
}

export function parseIPv4(s: unknown): number | undefined {
  if (typeof s !== "string") return undefined;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function prefixOf(
  entry: Record<string, unknown>,
  where: string,
): { network: number; len: number; cidr: string } {
  const subnet = entry.subnet;
  if (!isRecord(subnet)) throw badRequest(`${where}: ipam subnet has no subnet {ip_prefix, ip_prefix_len}`);
  const prefix = subnet.ip_prefix;
  const len = Number(subnet.ip_prefix_len);
  if (typeof prefix === "string" && prefix.includes(":"))
    throw badRequest(
      `${where}: IPv6 subnet ${prefix}/${String(subnet.ip_prefix_len)} is not supported by the TF emulator (IPv4 only)`,
    );
  const ip = parseIPv4(prefix);
  if (ip === undefined || !Number.isInteger(len) || len < 0 || len > 32)
    throw badRequest(`${where}: invalid subnet ${String(prefix)}/${String(subnet.ip_prefix_len)}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const network = (ip & mask) >>> 0;
  return { network, len, cidr: `${formatIPv4(network)}/${len}` };
}

/**
 * An IpamSubnetType with the server's defaults filled in. `prev` is the same subnet as stored before an
 * update (matched by prefix): its system-assigned values are kept, so a subnet keeps its uuid.
 */
export function normalizeIpamSubnet(
  entry: Record<string, unknown>,
  where: string,
  prev?: Record<string, unknown>,
): Record<string, unknown> {
  const { network, len, cidr } = prefixOf(entry, where);
  const size = 2 ** (32 - len);
  const last = network + size - 1;
  const fromStart = entry.addr_from_start === true;
  const out: Record<string, unknown> = { ...entry };
  out.subnet_uuid ??= prev?.subnet_uuid ?? randomUUID();
  if (out.default_gateway === undefined || out.default_gateway === null)
    out.default_gateway =
      prev?.default_gateway ?? (size >= 4 ? formatIPv4(fromStart ? network + 1 : last - 1) : null);
  if (out.dns_server_address === undefined || out.dns_server_address === null)
    out.dns_server_address =
      prev?.dns_server_address ?? (size >= 4 ? formatIPv4(fromStart ? network + 2 : last - 2) : null);
  out.enable_dhcp ??= true;
  out.addr_from_start ??= false;
  for (const key of ["default_gateway", "dns_server_address"] as const) {
    if (out[key] !== null && parseIPv4(out[key]) === undefined)
      throw badRequest(`${where}: subnet(${cidr}) has invalid ${key} ${show(out[key])}`);
  }
  for (const pool of Array.isArray(out.allocation_pools) ? out.allocation_pools : []) {
    const start = isRecord(pool) ? parseIPv4(pool.start) : undefined;
    const end = isRecord(pool) ? parseIPv4(pool.end) : undefined;
    if (start === undefined || end === undefined)
      throw badRequest(`subnet(${cidr}) has Invalid Ip address in Allocation Pool(${JSON.stringify(pool)})`);
    if (start < network || end > last)
      throw badRequest(`subnet(${cidr}) allocation pool (${JSON.stringify(pool)}) is out of cidr`);
    if (end < start) throw badRequest(`subnet(${cidr}) has Invalid Allocation Pool(${JSON.stringify(pool)})`);
  }
  return out;
}

/** The allocator's view of a normalized IpamSubnetType. */
export function toSubnet(entry: Record<string, unknown>): Subnet {
  const { network, len, cidr } = prefixOf(entry, "subnet");
  const broadcast = network + 2 ** (32 - len) - 1;
  const pools = (Array.isArray(entry.allocation_pools) ? entry.allocation_pools : [])
    .filter(isRecord)
    .map((p) => ({ start: parseIPv4(p.start), end: parseIPv4(p.end) }))
    .filter((p): p is { start: number; end: number } => p.start !== undefined && p.end !== undefined);
  return {
    uuid: typeof entry.subnet_uuid === "string" ? entry.subnet_uuid : "",
    cidr,
    network,
    broadcast,
    gateway: parseIPv4(entry.default_gateway),
    dns: parseIPv4(entry.dns_server_address),
    pools: pools.length > 0 ? pools : [{ start: network, end: broadcast }],
    addrFromStart: entry.addr_from_start === true,
  };
}

export const contains = (s: Subnet, ip: number): boolean => ip >= s.network && ip <= s.broadcast;

/** Addresses no instance-ip may take: network, broadcast, and the gateway and DNS (service) addresses. */
export function isReserved(s: Subnet, ip: number): boolean {
  return ip === s.network || ip === s.broadcast || ip === s.gateway || ip === s.dns;
}

/** The next free address of `s`, or undefined when the subnet (its pools) is exhausted. */
export function allocate(s: Subnet, inUse: ReadonlySet<number>): number | undefined {
  const pools = [...s.pools].sort((a, b) => (s.addrFromStart ? a.start - b.start : b.end - a.end));
  for (const p of pools) {
    if (s.addrFromStart) {
      for (let ip = p.start; ip <= p.end; ip++) if (!isReserved(s, ip) && !inUse.has(ip)) return ip;
    } else {
      for (let ip = p.end; ip >= p.start; ip--) if (!isReserved(s, ip) && !inUse.has(ip)) return ip;
    }
  }
  return undefined;
}
