// CIDR math for IPAM and excluded prefixes. IPv4 and IPv6 addresses are both held as BigInt so that one code
// path serves both families; a /16 pool or a /64 pool is just a range of integers.

export type Family = 4 | 6;

/** One IP address: its family and its value as an unsigned integer (32 or 128 bits). */
export interface IpAddr {
  readonly family: Family;
  readonly value: bigint;
}

/** An address with a prefix length, as written ("10.0.0.5/24" keeps its host bits; see networkOf). */
export interface Cidr extends IpAddr {
  readonly bits: number;
}

/** Number of bits in an address of the family: 32 or 128. */
export function maxBits(family: Family): 32 | 128 {
  return family === 4 ? 32 : 128;
}

const v4Octet = /^(0|[1-9][0-9]{0,2})$/;
const v6Group = /^[0-9a-fA-F]{1,4}$/;
const prefixLen = /^(0|[1-9][0-9]{0,2})$/;

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  // Number arithmetic, one BigInt at the end: excluded-prefix lists make this a per-request hot path.
  let value = 0;
  for (const part of parts) {
    if (!v4Octet.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return BigInt(value);
}

/** Groups of one side of "::" (or of the whole address); a trailing dotted quad counts as two groups. */
function parseV6Groups(text: string, allowV4Tail: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (allowV4Tail && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseV4(part);
      if (v4 === undefined) return undefined;
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    } else if (v6Group.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}

function parseV6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const left = parseV6Groups(halves[0]!, false);
    const right = parseV6Groups(halves[1]!, true);
    if (!left || !right || left.length + right.length > 7) return undefined;
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    const all = parseV6Groups(text, true);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  }
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

/** Parses "192.0.2.1" or "2001:db8::1" (no zone, no brackets); undefined when it is not an address. */
export function tryParseIp(text: string): IpAddr | undefined {
  if (text.includes(":")) {
    const value = parseV6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(text);
  return value === undefined ? undefined : { family: 4, value };
}

/** Parses an address; throws an Error naming the text when it is not one. */
export function parseIp(text: string): IpAddr {
  const ip = tryParseIp(text);
  if (!ip) throw new Error(`"${text}" is not an IPv4 or IPv6 address`);
  return ip;
}

/** Parses "addr/len"; undefined when malformed or when len exceeds the family's width. */
export function tryParseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = tryParseIp(text.slice(0, slash));
  const len = text.slice(slash + 1);
  if (!ip || !prefixLen.test(len)) return undefined;
  const bits = Number(len);
  if (bits > maxBits(ip.family)) return undefined;
  return { family: ip.family, value: ip.value, bits };
}

/** Parses "addr/len"; throws an Error naming the text when it is not a CIDR. */
export function parseCidr(text: string): Cidr {
  const cidr = tryParseCidr(text);
  if (!cidr) throw new Error(`"${text}" is not a CIDR (expected e.g. 10.0.0.0/16 or 2001:db8::/64)`);
  return cidr;
}

/** Like tryParseCidr, but a bare address is read as a host prefix (/32 or /128). */
export function tryParseCidrOrIp(text: string): Cidr | undefined {
  if (text.includes("/")) return tryParseCidr(text);
  const ip = tryParseIp(text);
  return ip ? hostCidr(ip) : undefined;
}

/**
 * tryParseCidrOrIp, remembered (bounded): every request carries the client's other connections' prefixes,
 * the same strings again and again, to every hop that reads them. The result is shared: Cidr is read-only.
 */
export function parseCidrOrIpCached(text: string): Cidr | undefined {
  const hit = parsed.get(text);
  if (hit !== undefined) return hit === false ? undefined : hit;
  const c = tryParseCidrOrIp(text);
  if (parsed.size >= 4096) parsed.clear();
  parsed.set(text, c ?? false);
  return c;
}

const parsed = new Map<string, Cidr | false>();

/** The address as a /32 (IPv4) or /128 (IPv6) prefix. */
export function hostCidr(ip: IpAddr): Cidr {
  return { family: ip.family, value: ip.value, bits: maxBits(ip.family) };
}

function hostMask(c: Cidr): bigint {
  return (1n << BigInt(maxBits(c.family) - c.bits)) - 1n;
}

/** Number of addresses in the prefix (2^(width − len)). */
export function size(c: Cidr): bigint {
  return 1n << BigInt(maxBits(c.family) - c.bits);
}

/** First address of the prefix (host bits cleared). */
export function firstAddr(c: Cidr): bigint {
  return c.value & ~hostMask(c);
}

/** Last address of the prefix (host bits set; the IPv4 broadcast address). */
export function lastAddr(c: Cidr): bigint {
  return c.value | hostMask(c);
}

/** The prefix with its host bits cleared: 10.0.0.5/24 → 10.0.0.0/24. */
export function networkOf(c: Cidr): Cidr {
  return { family: c.family, value: firstAddr(c), bits: c.bits };
}

// IPv4 ranges in Number arithmetic (exact below 2^53): contains/overlaps run per excluded prefix per candidate
// address in IPAM and per other connection in the client, and BigInt masks allocated on every call.
function v4First(c: Cidr): number {
  const v = Number(c.value);
  return v - (v % 2 ** (32 - c.bits));
}

function v4Last(c: Cidr): number {
  return v4First(c) + 2 ** (32 - c.bits) - 1;
}

/** Whether the address (or every address of the prefix) lies inside `c`; different families never match. */
export function contains(c: Cidr, x: IpAddr | Cidr): boolean {
  if (c.family !== x.family) return false;
  if (c.family === 4) {
    if ("bits" in x) return x.bits >= c.bits && v4First(x) >= v4First(c) && v4Last(x) <= v4Last(c);
    const v = Number(x.value);
    return v >= v4First(c) && v <= v4Last(c);
  }
  if ("bits" in x) return x.bits >= c.bits && firstAddr(x) >= firstAddr(c) && lastAddr(x) <= lastAddr(c);
  return x.value >= firstAddr(c) && x.value <= lastAddr(c);
}

/** Whether the two prefixes share at least one address; different families never overlap. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  if (a.family === 4) return v4First(a) <= v4Last(b) && v4First(b) <= v4Last(a);
  return firstAddr(a) <= lastAddr(b) && firstAddr(b) <= lastAddr(a);
}

/** The n-th address of the prefix, counting from its first address; throws RangeError outside the prefix. */
export function nth(c: Cidr, n: bigint): IpAddr {
  if (n < 0n || n >= size(c)) throw new RangeError(`address #${n} is outside ${formatCidr(networkOf(c))}`);
  return { family: c.family, value: firstAddr(c) + n };
}

/** Dotted quad for IPv4; RFC 5952 canonical text for IPv6 (lower case, longest zero run as "::"). */
export function formatIp(ip: IpAddr): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
  }
  const groups: number[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(Number((ip.value >> s) & 0xffffn));
  // Longest run of at least two zero groups; the first one wins a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}

/** "addr/len" with the address as stored (use networkOf first to print the network). */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c)}/${c.bits}`;
}

/** Canonical text of a CIDR or bare address (bare → host prefix), for comparing strings written differently. */
export function canonicalCidr(text: string): string | undefined {
  const hit = canonical.get(text);
  if (hit !== undefined) return hit === false ? undefined : hit;
  const c = tryParseCidrOrIp(text);
  const out = c ? formatCidr(c) : undefined;
  // The same few hundred prefixes come back on every request and refresh: remember the answers (bounded).
  if (canonical.size >= 4096) canonical.clear();
  canonical.set(text, out ?? false);
  return out;
}

const canonical = new Map<string, string | false>();
