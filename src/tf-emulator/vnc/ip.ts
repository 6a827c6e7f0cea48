// IPv4 and IPv6 addresses as BigInt, for the emulated address manager: one representation for both
// families keeps the subnet arithmetic (gateway = last-1, top-down allocation) identical, and BigInt is
// needed anyway for the last address of a /64. Formatting follows what the real server prints (Python's
// netaddr, which compresses IPv6 like inet_ntop), since clients compare addresses as text.

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

export const addressBits = (family: Family): number => (family === 4 ? 32 : 128);

function parseV4(s: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
}

function parseV6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  // An embedded IPv4 suffix (::ffff:10.0.0.1) stands for the last two groups: rewrite it as hex.
  const lastColon = s.lastIndexOf(":");
  const suffix = s.slice(lastColon + 1);
  if (suffix.includes(".")) {
    const v4 = parseV4(suffix);
    if (v4 === undefined) return undefined;
    return parseV6(`${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`);
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !rest) return undefined;
  let words: number[];
  if (halves.length === 2) {
    if (head.length + rest.length > 7) return undefined;
    words = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    if (head.length !== 8) return undefined;
    words = head;
  }
  return words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
}

/** An address of either family, or undefined when `s` is not one (no prefix, no zone). */
export function parseIp(s: unknown): Ip | undefined {
  if (typeof s !== "string" || s === "") return undefined;
  if (s.includes(":")) {
    const value = parseV6(s);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(s);
  return value === undefined ? undefined : { family: 4, value };
}

function formatV6(value: bigint): string {
  const words = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(16 * (7 - i))) & 0xffffn));
  // Longest run of zero groups (the first on a tie), compressed only when it is two groups or longer.
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  if (best.len < 2) best = { at: -1, len: 0 };
  // inet_ntop prints IPv4-mapped and IPv4-compatible addresses with a dotted tail.
  if (best.at === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff))) {
    const v4 = formatIp({ family: 4, value: value & 0xffffffffn });
    return best.len === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(":");
  if (best.at < 0) return hex(words);
  return `${hex(words.slice(0, best.at))}::${hex(words.slice(best.at + best.len))}`;
}

export function formatIp(ip: Ip): string {
  if (ip.family === 6) return formatV6(ip.value);
  const v = ip.value;
  return [v >> 24n, (v >> 16n) & 255n, (v >> 8n) & 255n, v & 255n].join(".");
}

/** The canonical text of an address (what the store keeps), or undefined when `s` is not an address. */
export function canonicalIp(s: unknown): string | undefined {
  const ip = parseIp(s);
  return ip && formatIp(ip);
}

export interface Prefix {
  family: Family;
  /** The network address (host bits cleared). */
  network: bigint;
  len: number;
  /** `10.0.0.0/24`, `2001:db8:1::/64`. */
  cidr: string;
}

/** `ip_prefix`/`ip_prefix_len` as netaddr's IPNetwork reads them; undefined when netaddr would refuse. */
export function parsePrefix(prefix: unknown, len: unknown): Prefix | undefined {
  const ip = parseIp(prefix);
  if (!ip) return undefined;
  const n = typeof len === "number" ? len : typeof len === "string" && /^\d+$/.test(len) ? Number(len) : NaN;
  const bits = addressBits(ip.family);
  if (!Number.isInteger(n) || n < 0 || n > bits) return undefined;
  const hostBits = BigInt(bits - n);
  const network = (ip.value >> hostBits) << hostBits;
  return {
    family: ip.family,
    network,
    len: n,
    cidr: `${formatIp({ family: ip.family, value: network })}/${n}`,
  };
}

/** The last address of a prefix (v4 broadcast). */
export const lastOf = (p: Prefix): bigint => p.network + (1n << BigInt(addressBits(p.family) - p.len)) - 1n;

/** Python's repr of a netaddr IPNetwork, as the real server prints subnets in "Overlapping addresses". */
export const ipNetworkRepr = (cidr: string): string => `IPNetwork('${cidr}')`;
