// Subnet arithmetic of the emulated address manager (the real one is vnc_addr_mgmt.py), for IPv4 and IPv6
// alike: filling the server defaults of an IpamSubnetType (subnet_uuid, gateway = last-1, DNS = last-2, or
// first+1/first+2 with addr_from_start), and picking a free address top-down (or bottom-up with
// addr_from_start), skipping the first and last address, the gateway and the DNS address.
import { randomUUID } from "node:crypto";
import { badRequest, conflict } from "./errors.js";
import { pyStr } from "./pyrepr.js";
import { formatIp, lastOf, parseIp, parsePrefix, type Family, type Ip } from "./ip.js";

export interface Subnet {
  uuid: string;
  family: Family;
  /** `10.0.0.0/24`, `2001:db8:1::/64`, as the real server prints subnets in its error texts. */
  cidr: string;
  network: bigint;
  /** The last address (v4 broadcast). */
  broadcast: bigint;
  gateway?: bigint;
  dns?: bigint;
  pools: { start: bigint; end: bigint }[];
  addrFromStart: boolean;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** An address of the subnet's family as a number, or undefined (wrong family or not an address). */
function inFamily(family: Family, s: unknown): bigint | undefined {
  const ip = parseIp(s);
  return ip?.family === family ? ip.value : undefined;
}

function prefixOf(entry: Record<string, unknown>): {
  family: Family;
  network: bigint;
  len: number;
  cidr: string;
} {
  const subnet = isRecord(entry.subnet) ? entry.subnet : {};
  const p = parsePrefix(subnet.ip_prefix, subnet.ip_prefix_len);
  // Property validation (validate.ts) refuses bad prefixes first, with the real server's text.
  if (!p)
    throw badRequest(`Subnet type '${pyStr(subnet.ip_prefix)}/${pyStr(subnet.ip_prefix_len)}' is invalid`);
  return p;
}

/**
 * An IpamSubnetType with the server's defaults filled in. `prev` is the same subnet as stored before an
 * update (matched by prefix): its system-assigned values are kept, so a subnet keeps its uuid.
 */
export function normalizeIpamSubnet(
  entry: Record<string, unknown>,
  prev?: Record<string, unknown>,
): Record<string, unknown> {
  const p = prefixOf(entry);
  const { family, network } = p;
  const last = lastOf(p);
  const size = last - network + 1n;
  const fromStart = entry.addr_from_start === true;
  const show = (v: bigint): string => formatIp({ family, value: v });
  const out: Record<string, unknown> = { ...entry };
  out.subnet_uuid ??= prev?.subnet_uuid ?? randomUUID();
  if (out.default_gateway === undefined || out.default_gateway === null)
    out.default_gateway =
      prev?.default_gateway ?? (size >= 4n ? show(fromStart ? network + 1n : last - 1n) : null);
  if (out.dns_server_address === undefined || out.dns_server_address === null)
    out.dns_server_address =
      prev?.dns_server_address ?? (size >= 4n ? show(fromStart ? network + 2n : last - 2n) : null);
  out.enable_dhcp ??= true;
  out.addr_from_start ??= false;
  return out;
}

/**
 * The real server's net_check_subnet on a (validated) IpamSubnetType: allocation pools, gateway and DNS
 * address. It answers 409, not 400, and prints the subnet as `<ip_prefix>/<ip_prefix_len>` as given.
 */
export function checkIpamSubnet(entry: Record<string, unknown>): void {
  const p = prefixOf(entry);
  const subnet = isRecord(entry.subnet) ? entry.subnet : {};
  const name = `${pyStr(subnet.ip_prefix)}/${pyStr(subnet.ip_prefix_len)}`;
  const last = lastOf(p);
  const inside = (ip: Ip, lo: bigint, hi: bigint): boolean =>
    ip.family === p.family && ip.value >= lo && ip.value <= hi;
  for (const pool of Array.isArray(entry.allocation_pools) ? entry.allocation_pools : []) {
    const rec = isRecord(pool) ? pool : {};
    const start = parseIp(rec.start);
    const end = parseIp(rec.end);
    const where = `start:${pyStr(rec.start)}, end:${pyStr(rec.end)}`;
    if (!start || !end || start.family !== end.family || end.value < start.value)
      throw conflict(`Invalid allocation Pool ${where} in subnet:${name}`);
    if (!inside(start, p.network, last) || !inside(end, p.network, last))
      throw conflict(`allocation pool ${where} out of cidr:${name}`);
  }
  const gw = entry.default_gateway;
  if (gw && gw !== "None") {
    const ip = parseIp(gw);
    if (!ip) throw conflict(`Invalid gateway Ip address:${pyStr(gw)}`);
    // 0.0.0.0 and :: mean "no gateway".
    if (ip.value !== 0n && !inside(ip, p.network + 1n, last - 1n))
      throw conflict(`gateway Ip ${pyStr(gw)} out of cidr: ${name}`);
  }
  const dns = entry.dns_server_address;
  if (dns && dns !== "None" && !parseIp(dns)) throw conflict(`Invalid Dns Server Ip address:${pyStr(dns)}`);
}

/** The allocator's view of a normalized IpamSubnetType. */
export function toSubnet(entry: Record<string, unknown>): Subnet {
  const p = prefixOf(entry);
  const { family } = p;
  const pools = (Array.isArray(entry.allocation_pools) ? entry.allocation_pools : [])
    .filter(isRecord)
    .map((x) => ({ start: inFamily(family, x.start), end: inFamily(family, x.end) }))
    .filter((x): x is { start: bigint; end: bigint } => x.start !== undefined && x.end !== undefined);
  const broadcast = lastOf(p);
  return {
    uuid: typeof entry.subnet_uuid === "string" ? entry.subnet_uuid : "",
    family,
    cidr: p.cidr,
    network: p.network,
    broadcast,
    gateway: inFamily(family, entry.default_gateway),
    dns: inFamily(family, entry.dns_server_address),
    pools: pools.length > 0 ? pools : [{ start: p.network, end: broadcast }],
    addrFromStart: entry.addr_from_start === true,
  };
}

export const contains = (s: Subnet, ip: Ip): boolean =>
  ip.family === s.family && ip.value >= s.network && ip.value <= s.broadcast;

/** Subnets that share an address (in CIDR terms: one contains the other). */
export const overlaps = (a: Subnet, b: Subnet): boolean =>
  a.family === b.family && a.network <= b.broadcast && b.network <= a.broadcast;

/** Addresses no instance-ip may take: first and last, and the gateway and DNS (service) addresses. */
export function isReserved(s: Subnet, ip: bigint): boolean {
  return ip === s.network || ip === s.broadcast || ip === s.gateway || ip === s.dns;
}

/**
 * The next free address of `s`, or undefined when the subnet (its pools) is exhausted. `inUse` holds
 * canonical address texts. The walk only passes addresses that are taken, so a /64 costs no more than a /24.
 */
export function allocate(s: Subnet, inUse: ReadonlySet<string>): string | undefined {
  const taken = (v: bigint): boolean =>
    isReserved(s, v) || inUse.has(formatIp({ family: s.family, value: v }));
  const pools = [...s.pools].sort((a, b) =>
    s.addrFromStart ? (a.start < b.start ? -1 : 1) : a.end > b.end ? -1 : 1,
  );
  for (const p of pools) {
    if (s.addrFromStart) {
      for (let ip = p.start; ip <= p.end; ip++)
        if (!taken(ip)) return formatIp({ family: s.family, value: ip });
    } else {
      for (let ip = p.end; ip >= p.start; ip--)
        if (!taken(ip)) return formatIp({ family: s.family, value: ip });
    }
  }
  return undefined;
}
