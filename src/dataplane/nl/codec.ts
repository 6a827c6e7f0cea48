// Value codecs for the message layer: IP addresses and prefixes, MAC addresses, interface names. Pure
// functions, no kernel access; each returns undefined (or a reason) for bad input so callers can raise a
// DataplaneError that names the operation.
import { isIPv4, isIPv6 } from "node:net";

export type Family = 4 | 6;

/** Linux address family numbers. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;

export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export interface ParsedIp {
  family: Family;
  /** Network-order bytes: 4 for IPv4, 16 for IPv6. */
  bytes: Buffer;
  /** Canonical text form (IPv6 compressed per RFC 5952). */
  text: string;
}

export interface ParsedCidr extends ParsedIp {
  prefixLen: number;
}

/** Parses an IPv4 or IPv6 address (no prefix). */
export function parseIp(s: string): ParsedIp | undefined {
  if (isIPv4(s)) {
    const bytes = Buffer.from(s.split(".").map((p) => Number(p)));
    return { family: 4, bytes, text: formatIp(bytes) };
  }
  if (isIPv6(s)) {
    const bytes = parseIpv6(s);
    return bytes ? { family: 6, bytes, text: formatIp(bytes) } : undefined;
  }
  return undefined;
}

/** Parses "a.b.c.d/len" or "x::y/len"; a bare address gets the host prefix (/32, /128). */
export function parseCidr(s: string): ParsedCidr | undefined {
  const slash = s.indexOf("/");
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.family === 4 ? 32 : 128;
  if (slash < 0) return { ...ip, prefixLen: max };
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return undefined;
  const prefixLen = Number(lenText);
  if (prefixLen > max) return undefined;
  return { ...ip, prefixLen };
}

/** Zeroes the host bits of `bytes` beyond `prefixLen` (returns a copy). */
export function maskBytes(bytes: Buffer, prefixLen: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function parseIpv6(s: string): Buffer | undefined {
  let text = s;
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4): convert it to two hex groups first.
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    if (!isIPv4(tail)) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  if (halves.length === 1 && head.length !== 8) return undefined;
  if (head.length + rest.length > (halves.length === 2 ? 7 : 8)) return undefined;
  const groups = [...head, ...new Array<string>(8 - head.length - rest.length).fill("0"), ...rest];
  for (let i = 0; i < 8; i++) {
    const g = groups[i] ?? "";
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    out.writeUInt16BE(parseInt(g, 16), i * 2);
  }
  return out;
}

/** Formats 4 or 16 network-order bytes as text (IPv6 in RFC 5952 compressed form). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  if (bytes.length !== 16) return Buffer.from(bytes).toString("hex");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // Longest run (≥2) of zero groups, first one wins on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Parses "aa:bb:cc:dd:ee:ff" (or with dashes) into 6 bytes. */
export function parseMac(s: string): Buffer | undefined {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) return undefined;
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes)
    .map((b) => b.toString(16).padStart(2, "0"))
    .join(":");
}

/** Linux IFNAMSIZ - 1: the longest interface name the kernel accepts, in bytes. */
export const MAX_LINK_NAME = 15;
/** IFALIASZ - 1: the longest interface alias the kernel accepts, in bytes. */
export const MAX_LINK_ALIAS = 255;

/**
 * Why `name` is not a valid Linux interface name (kernel dev_valid_name rules), or undefined if it is.
 * Names are 1–15 bytes, not "." or "..", without "/", ":" or whitespace.
 */
export function linkNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name);
  if (bytes === 0) return "interface name is empty";
  if (bytes > MAX_LINK_NAME)
    return `interface name "${name}" is ${bytes} bytes, the kernel allows at most ${MAX_LINK_NAME}`;
  if (name === "." || name === "..") return `interface name "${name}" is reserved`;
  if (/[/:\s]/.test(name)) return `interface name "${name}" contains "/", ":" or whitespace`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00]/.test(name)) return `interface name "${name}" contains a NUL byte`;
  return undefined;
}
