// Neighbours: permanent IP → MAC entries on an interface (add / replace / delete / list).
import netlink from "netlink";
import type { rt } from "netlink";
import type { LinkRef, NsContext } from "./context.js";
import { linkRefText } from "./context.js";
import { DataplaneError, isErrno, type OpContext } from "./errors.js";
import { resolveLinkIndex } from "./link.js";
import { AF_INET, AF_INET6, afOf, formatIp, formatMac, parseIp, parseMac, type Family } from "./nl/codec.js";
import { NLM_F, RTM, type MessageBuilder, type RtmType } from "./nl/socket.js";

export interface NeighSpec {
  dev: LinkRef;
  ip: string;
  /** Link-layer address "aa:bb:cc:dd:ee:ff". */
  mac: string;
}

export interface Neigh {
  index: number;
  family: Family;
  ip: string;
  mac?: string;
  /** NUD_* state names that are set ("permanent", "reachable", "stale", …). */
  state: string[];
}

/** A VXLAN forwarding-database entry: frames for `mac` (all zeros: flooded frames) go to the VTEP `dst`. */
export interface FdbSpec {
  dev: LinkRef;
  mac: string;
  dst: string;
}

const AF_BRIDGE = 7;

export interface NeighDelOptions {
  /** Succeed if there is no such entry. */
  missingOk?: boolean;
}

function neighMsg(data: rt.Neighbor, attrs: rt.NeighborAttrs): MessageBuilder {
  return (out) => netlink.rt.formatNeighborMessage({ kind: "neighbor", data, attrs }, out);
}

function ipArg(ip: string, ctx: OpContext) {
  const p = parseIp(ip);
  if (!p) throw DataplaneError.of(ctx, "EINVAL", `"${ip}" is not an IP address`);
  return p;
}

function toNeigh(m: rt.NeighborMessage): Neigh | undefined {
  const family: Family | undefined =
    m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (!family || !m.attrs.dst) return undefined;
  const n: Neigh = {
    index: m.data.ifindex ?? 0,
    family,
    ip: formatIp(m.attrs.dst),
    state: Object.entries(m.data.state ?? {})
      .filter(([k, v]) => k !== "__unknown" && v === true)
      .map(([k]) => k),
  };
  if (m.attrs.lladdr && m.attrs.lladdr.length === 6) n.mac = formatMac(m.attrs.lladdr);
  return n;
}

/** Neighbour-table operations in one namespace. */
export class NeighOps {
  constructor(private readonly ns: NsContext) {}

  /** Adds a permanent entry; EEXIST if the IP already has one on that interface (use replace). */
  add(spec: NeighSpec): Promise<void> {
    return this.write("neigh add", spec, NLM_F.CREATE | NLM_F.EXCL);
  }

  /** Adds or overwrites a permanent entry. */
  replace(spec: NeighSpec): Promise<void> {
    return this.write("neigh replace", spec, NLM_F.CREATE | NLM_F.REPLACE);
  }

  async del(spec: Omit<NeighSpec, "mac">, opts: NeighDelOptions = {}): Promise<void> {
    const ctx = this.ns.ctx("neigh del", `${spec.ip} dev ${linkRefText(spec.dev)}`);
    const ip = ipArg(spec.ip, ctx);
    try {
      const ifindex = await resolveLinkIndex(this.ns, spec.dev, ctx);
      await this.ns.rtnl.request(
        RTM.DELNEIGH,
        neighMsg({ family: afOf(ip.family), ifindex }, { dst: ip.bytes }),
        0,
        ctx,
      );
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENOENT", "ENODEV", "ESRCH")) return;
      throw err;
    }
  }

  /**
   * Answers ARP / neighbour solicitations for `ip` on `dev` on behalf of a host routed elsewhere (`ip neigh
   * add proxy`): the kernel answers when forwarding is on, and for IPv6 also `proxy_ndp`. Idempotent.
   */
  async proxyAdd(spec: Omit<NeighSpec, "mac">): Promise<void> {
    await this.proxyWrite("neigh add proxy", RTM.NEWNEIGH, spec, NLM_F.CREATE | NLM_F.REPLACE);
  }

  async proxyDel(spec: Omit<NeighSpec, "mac">, opts: NeighDelOptions = {}): Promise<void> {
    try {
      await this.proxyWrite("neigh del proxy", RTM.DELNEIGH, spec, 0);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENOENT", "ENODEV", "ESRCH")) return;
      throw err;
    }
  }

  private async proxyWrite(op: string, type: RtmType, spec: Omit<NeighSpec, "mac">, flags: number) {
    const ctx = this.ns.ctx(op, `${spec.ip} dev ${linkRefText(spec.dev)}`);
    const ip = ipArg(spec.ip, ctx);
    const ifindex = await resolveLinkIndex(this.ns, spec.dev, ctx);
    await this.ns.rtnl.request(
      type,
      neighMsg({ family: afOf(ip.family), ifindex, flags: { proxy: true } }, { dst: ip.bytes }),
      flags,
      ctx,
    );
  }

  /**
   * Appends a VXLAN FDB entry (`bridge fdb append <mac> dev <vxlan> dst <ip>`): one per remote VTEP for the
   * all-zeros MAC gives head-end replication of broadcast and unknown frames. EEXIST if present.
   */
  fdbAppend(spec: FdbSpec): Promise<void> {
    return this.fdbWrite("fdb append", RTM.NEWNEIGH, spec, NLM_F.CREATE | NLM_F.APPEND);
  }

  /** Removes a VXLAN FDB entry. */
  async fdbDel(spec: FdbSpec, opts: NeighDelOptions = {}): Promise<void> {
    try {
      await this.fdbWrite("fdb del", RTM.DELNEIGH, spec, 0);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENOENT", "ENODEV", "ESRCH")) return;
      throw err;
    }
  }

  /** Remote VTEPs of the FDB entries of `dev` for `mac` (default all zeros). */
  async fdbDsts(dev: LinkRef, mac = "00:00:00:00:00:00"): Promise<string[]> {
    const ctx = this.ns.ctx("fdb list", linkRefText(dev));
    const index = await resolveLinkIndex(this.ns, dev, ctx);
    const msgs = await this.ns.rtnl.request(
      RTM.GETNEIGH,
      neighMsg({ family: AF_BRIDGE, ifindex: index }, {}),
      NLM_F.DUMP,
      ctx,
    );
    const out: string[] = [];
    for (const m of msgs) {
      if (m.kind !== "neighbor" || m.data.ifindex !== index || !m.attrs.dst || !m.attrs.lladdr) continue;
      if (formatMac(m.attrs.lladdr) === mac.toLowerCase()) out.push(formatIp(m.attrs.dst));
    }
    return out;
  }

  private async fdbWrite(op: string, type: RtmType, spec: FdbSpec, flags: number): Promise<void> {
    const ctx = this.ns.ctx(op, `${spec.mac} dev ${linkRefText(spec.dev)} dst ${spec.dst}`);
    const ip = ipArg(spec.dst, ctx);
    const mac = parseMac(spec.mac);
    if (!mac) throw DataplaneError.of(ctx, "EINVAL", `"${spec.mac}" is not a MAC address`);
    const ifindex = await resolveLinkIndex(this.ns, spec.dev, ctx);
    await this.ns.rtnl.request(
      type,
      neighMsg(
        { family: AF_BRIDGE, ifindex, state: { permanent: true }, flags: { self: true } },
        { dst: ip.bytes, lladdr: mac },
      ),
      flags,
      ctx,
    );
  }

  /** Entries of the namespace, optionally of one interface / one family. */
  async list(dev?: LinkRef, family?: Family): Promise<Neigh[]> {
    const ctx = this.ns.ctx("neigh list", dev === undefined ? "*" : linkRefText(dev));
    const index = dev === undefined ? undefined : await resolveLinkIndex(this.ns, dev, ctx);
    const msgs = await this.ns.rtnl.request(
      RTM.GETNEIGH,
      neighMsg({ family: family ? afOf(family) : 0 }, {}),
      NLM_F.DUMP,
      ctx,
    );
    const out: Neigh[] = [];
    for (const m of msgs) {
      if (m.kind !== "neighbor") continue;
      const n = toNeigh(m);
      if (n && (index === undefined || n.index === index) && (!family || n.family === family)) out.push(n);
    }
    return out;
  }

  private async write(op: string, spec: NeighSpec, flags: number): Promise<void> {
    const ctx = this.ns.ctx(op, `${spec.ip} lladdr ${spec.mac} dev ${linkRefText(spec.dev)}`);
    const ip = ipArg(spec.ip, ctx);
    const mac = parseMac(spec.mac);
    if (!mac) throw DataplaneError.of(ctx, "EINVAL", `"${spec.mac}" is not a MAC address`);
    const ifindex = await resolveLinkIndex(this.ns, spec.dev, ctx);
    await this.ns.rtnl.request(
      RTM.NEWNEIGH,
      neighMsg(
        { family: afOf(ip.family), ifindex, state: { permanent: true } },
        { dst: ip.bytes, lladdr: mac },
      ),
      flags,
      ctx,
    );
  }
}
