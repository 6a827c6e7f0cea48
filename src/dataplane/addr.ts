// Addresses: add (idempotent, with a duplicate check across interfaces), delete, list; IPv4 and IPv6.
import netlink from "netlink";
import type { rt } from "netlink";
import type { LinkRef, NsContext } from "./context.js";
import { linkRefText } from "./context.js";
import { DataplaneError, isErrno, type OpContext } from "./errors.js";
import { getLink, resolveLinkIndex } from "./link.js";
import { AF_INET, AF_INET6, afOf, formatIp, parseCidr, type Family, type ParsedCidr } from "./nl/codec.js";
import { NLM_F, RTM, type MessageBuilder } from "./nl/socket.js";

export interface Address {
  /** Index of the interface holding the address. */
  index: number;
  family: Family;
  /** The address itself ("169.254.0.1", "fd00::1"). */
  address: string;
  prefixLen: number;
  /** "address/prefixLen". */
  cidr: string;
  /** For point-to-point addresses: the peer (IFA_ADDRESS when it differs from IFA_LOCAL). */
  peer?: string;
  /** rtm scope: 0 universe, 253 link, 254 host. */
  scope: number;
  label?: string;
}

export interface AddrAddOptions {
  /**
   * Allow the same address on another interface of the namespace (the kernel does). Default false: adding
   * an address some other interface already has fails with EADDRINUSE, naming that interface. The check
   * costs one address dump of the namespace (~0.1 ms in a pod, ~1 ms with 150 addresses); IPv6 link-local
   * addresses are never checked.
   */
  allowDuplicate?: boolean;
  /** IPv6 only: skip duplicate address detection so the address is usable at once (default true). */
  nodad?: boolean;
}

export interface AddrDelOptions {
  /** Succeed if the address is not there. */
  missingOk?: boolean;
}

const IFADDRMSG_LEN = 8;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
/** nla_type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags. */
const NLA_TYPE_MASK = 0x3fff;

function cidrArg(cidr: string, ctx: OpContext): ParsedCidr {
  const p = parseCidr(cidr);
  if (!p) throw DataplaneError.of(ctx, "EINVAL", `"${cidr}" is not an IP address with an optional /prefix`);
  return p;
}

function addrMsg(data: rt.Address, attrs: rt.AddressAttrs): MessageBuilder {
  return (out) => netlink.rt.formatAddressMessage({ kind: "address", data, attrs }, out);
}

function toAddress(m: rt.AddressMessage): Address | undefined {
  const family: Family | undefined =
    m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  const local = m.attrs.local ?? m.attrs.address;
  if (!family || !local) return undefined;
  const address = formatIp(local);
  const prefixLen = m.data.prefixlen ?? 0;
  const a: Address = {
    index: m.data.index ?? 0,
    family,
    address,
    prefixLen,
    cidr: `${address}/${prefixLen}`,
    scope: m.data.scope ?? 0,
  };
  if (m.attrs.local && m.attrs.address && !m.attrs.local.equals(m.attrs.address))
    a.peer = formatIp(m.attrs.address);
  if (m.attrs.label) a.label = m.attrs.label;
  return a;
}

/** Address operations in one namespace. */
export class AddrOps {
  constructor(private readonly ns: NsContext) {}

  /** Addresses in the namespace, optionally only those of one link and/or one family. */
  async list(link?: LinkRef, family?: Family): Promise<Address[]> {
    const ctx = this.ns.ctx("addr list", link === undefined ? "*" : linkRefText(link));
    const index = link === undefined ? undefined : await resolveLinkIndex(this.ns, link, ctx);
    const msgs = await this.ns.rtnl.request(
      RTM.GETADDR,
      addrMsg({ family: family ? afOf(family) : 0 }, {}),
      NLM_F.DUMP,
      ctx,
    );
    const out: Address[] = [];
    for (const m of msgs) {
      if (m.kind !== "address") continue;
      const a = toAddress(m);
      if (a && (index === undefined || a.index === index) && (!family || a.family === family)) out.push(a);
    }
    return out;
  }

  /**
   * Adds `cidr` ("169.254.0.1/30"; a bare address means /32 or /128) to a link. Idempotent: adding an
   * address the link already has succeeds.
   */
  async add(link: LinkRef, cidr: string, opts: AddrAddOptions = {}): Promise<void> {
    const ctx = this.ns.ctx(`addr add ${cidr} on`, linkRefText(link));
    const p = cidrArg(cidr, ctx);
    const index = await resolveLinkIndex(this.ns, link, ctx);
    // IPv6 link-local addresses (fe80::/10) are per link by definition: the same one on several is normal.
    const linkLocal6 = p.family === 6 && p.bytes[0] === 0xfe && ((p.bytes[1] ?? 0) & 0xc0) === 0x80;
    if (!opts.allowDuplicate && !linkLocal6) {
      for (const a of await this.holders(p, ctx)) {
        if (a.index === index && a.prefixLen === p.prefixLen) return;
        if (a.index !== index) {
          const other = await this.linkName(a.index);
          throw DataplaneError.of(ctx, "EADDRINUSE", `${p.text}/${a.prefixLen} is already on ${other}`);
        }
      }
    }
    const data: rt.Address = { family: afOf(p.family), prefixlen: p.prefixLen, index };
    const attrs: rt.AddressAttrs = { local: p.bytes, address: p.bytes };
    if (p.family === 6) {
      delete attrs.local;
      if (opts.nodad ?? true) data.flags = { nodad: true };
    }
    try {
      await this.ns.rtnl.request(RTM.NEWADDR, addrMsg(data, attrs), NLM_F.CREATE | NLM_F.EXCL, ctx);
    } catch (err) {
      if (isErrno(err, "EEXIST")) return;
      throw err;
    }
  }

  /** Removes `cidr` from a link. */
  async del(link: LinkRef, cidr: string, opts: AddrDelOptions = {}): Promise<void> {
    const ctx = this.ns.ctx(`addr del ${cidr} on`, linkRefText(link));
    const p = cidrArg(cidr, ctx);
    let index: number;
    try {
      index = await resolveLinkIndex(this.ns, link, ctx);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENODEV")) return;
      throw err;
    }
    const data: rt.Address = { family: afOf(p.family), prefixlen: p.prefixLen, index };
    const attrs: rt.AddressAttrs =
      p.family === 4 ? { local: p.bytes, address: p.bytes } : { address: p.bytes };
    try {
      await this.ns.rtnl.request(RTM.DELADDR, addrMsg(data, attrs), 0, ctx);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "EADDRNOTAVAIL", "ENOENT", "ESRCH", "ENODEV")) return;
      throw err;
    }
  }

  /**
   * Every address entry of the namespace equal to `p`'s address (any prefix length), in dump order. Reads
   * only the few bytes it needs of each dumped message: in a namespace holding many connections (an NSE's
   * pod) decoding the whole dump cost more than the kernel's part of it.
   */
  private async holders(p: ParsedCidr, ctx: OpContext): Promise<{ index: number; prefixLen: number }[]> {
    const msgs = await this.ns.rtnl.requestRaw(
      RTM.GETADDR,
      addrMsg({ family: afOf(p.family) }, {}),
      NLM_F.DUMP,
      { ...ctx, op: "addr list" },
    );
    const af = afOf(p.family);
    const out: { index: number; prefixLen: number }[] = [];
    for (const m of msgs) {
      // struct ifaddrmsg: family u8, prefixlen u8, flags u8, scope u8, index u32; then rtattrs.
      const d = m.data;
      if (m.type !== RTM.NEWADDR || d.length < IFADDRMSG_LEN || d[0] !== af) continue;
      let local: Buffer | undefined;
      let address: Buffer | undefined;
      for (let off = IFADDRMSG_LEN; off + 4 <= d.length;) {
        const len = d.readUInt16LE(off);
        if (len < 4 || off + len > d.length) break;
        const type = d.readUInt16LE(off + 2) & NLA_TYPE_MASK;
        if (type === IFA_LOCAL) local = d.subarray(off + 4, off + len);
        else if (type === IFA_ADDRESS) address = d.subarray(off + 4, off + len);
        off += (len + 3) & ~3;
      }
      // As `list` reports it: the local address, or IFA_ADDRESS where there is none (IPv6).
      if ((local ?? address)?.equals(p.bytes)) out.push({ index: d.readUInt32LE(4), prefixLen: d[1]! });
    }
    return out;
  }

  private async linkName(index: number): Promise<string> {
    try {
      return (await getLink(this.ns, index, this.ns.ctx("link get", `#${index}`))).name;
    } catch {
      return `#${index}`;
    }
  }
}
