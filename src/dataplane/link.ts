// Links: list/get, create veth (peer created directly in its target namespace), VXLAN and bridge, set
// name/MTU/MAC/alias/state/master, move to another namespace, delete.
import netlink from "netlink";
import type { ifla, rt } from "netlink";
import type { LinkRef, NsContext } from "./context.js";
import { linkRefIndex, linkRefText } from "./context.js";
import { DataplaneError, isErrno, type OpContext } from "./errors.js";
import { MAX_LINK_ALIAS, formatMac, linkNameProblem, parseIp, parseMac, type ParsedIp } from "./nl/codec.js";
import { decodeLinkInfo, plainLinkInfo, vethLinkInfo, vxlanLinkInfo, type VxlanInfo } from "./nl/linkinfo.js";
import { NLM_F, RTM, type MessageBuilder } from "./nl/socket.js";

const { getU32, putU32 } = netlink;

/** RTEXT_FILTER_SKIP_STATS: ask the kernel to leave the (large) statistics out of link replies. */
const EXT_MASK_SKIP_STATS = putU32(1 << 3);

const OPER_STATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"] as const;

/** A link as the kernel reports it. */
export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "veth", "vxlan", "bridge", … (undefined for loopback and physical devices). */
  kind?: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  /** RFC 2863 operational state: "up", "down", "lowerlayerdown", "unknown", … */
  operState: string;
  mac?: string;
  /** IFLA_IFALIAS; the forwarder tags its links with the connection id here. */
  alias?: string;
  /** Index of the master (bridge) this link is enslaved to. */
  masterIndex?: number;
  /** IFLA_LINK: for a veth, the peer's index (in the namespace named by linkNetnsId, if set). */
  parentIndex?: number;
  /** IFLA_LINK_NETNSID: the peer/underlay lives in another namespace, known here by this netns id. */
  linkNetnsId?: number;
  /** VXLAN parameters, for kind "vxlan". */
  vxlan?: VxlanInfo;
}

export interface LinkCommon {
  /** Interface name, 1–15 bytes. */
  name: string;
  mtu?: number;
  /** MAC address "aa:bb:cc:dd:ee:ff". */
  mac?: string;
  /** IFLA_IFALIAS (set with a follow-up request; the link is deleted again if that fails). */
  alias?: string;
  /** Bring the link up as part of the create request. */
  up?: boolean;
  /** Enslave to this bridge (in the same namespace) as part of the create request. */
  master?: LinkRef;
}

export interface VethSpec extends LinkCommon {
  peer: {
    name: string;
    /**
     * The namespace to create the peer in (IFLA_NET_NS_FD on the peer: one request, no create-then-move).
     * Default: the same namespace.
     */
    netns?: NsContext;
    /** Default: the MTU of the local end. */
    mtu?: number;
    mac?: string;
    alias?: string;
    up?: boolean;
  };
}

export interface VxlanSpec extends LinkCommon {
  /** VXLAN network identifier, 24 bits. */
  vni: number;
  /** Remote tunnel endpoint (unicast) or multicast group. */
  remote?: string;
  /** Local tunnel endpoint (source address of the outer packets). */
  local?: string;
  /** UDP destination port (default 4789). */
  port?: number;
  /** Underlay interface the outer packets leave through (IFLA_VXLAN_LINK). */
  underlay?: LinkRef;
  /** FDB learning (default false: NSM tunnels are point-to-point). */
  learning?: boolean;
  /**
   * Create the device directly in this namespace (IFLA_NET_NS_FD) while its tunnel socket stays in the
   * namespace of this handle, where the underlay is: no create-then-move (moving a device waits for an RCU
   * grace period under the RTNL lock, which serialises concurrent setups).
   */
  netns?: NsContext;
  ttl?: number;
}

export type BridgeSpec = LinkCommon;

/** Attributes `set` can change in one RTM_SETLINK request. */
export interface LinkChanges {
  /** New name (kernels before 6.2 refuse to rename an interface that is up: EBUSY). */
  name?: string;
  mtu?: number;
  mac?: string;
  /** "" clears the alias. */
  alias?: string;
  up?: boolean;
  /** A bridge to enslave to, or null to release from the current master. */
  master?: LinkRef | null;
}

export interface DeleteOptions {
  /** Succeed if the link does not exist (ENODEV). */
  missingOk?: boolean;
}

export interface MoveOptions {
  /** Name to give the link in the target namespace. */
  name?: string;
  /** Bring it up in the target namespace (moving always leaves a link down). */
  up?: boolean;
}

/** Resolves a link reference to its index (numbers are trusted as indexes). */
export async function resolveLinkIndex(ns: NsContext, ref: LinkRef, ctx: OpContext): Promise<number> {
  const known = linkRefIndex(ref);
  if (known !== undefined) return known;
  const link = await getLink(ns, ref, ctx);
  return link.index;
}

/** Reads one link by name or index; throws ENODEV if there is none. */
export async function getLink(ns: NsContext, ref: LinkRef, ctx: OpContext): Promise<Link> {
  const index = linkRefIndex(ref);
  const data: rt.Link = index !== undefined ? { index } : {};
  const attrs: ifla.LinkAttrs = { extMask: EXT_MASK_SKIP_STATS };
  if (typeof ref === "string") {
    checkName(ref, ctx);
    attrs.ifname = ref;
  }
  const msgs = await ns.rtnl.request(RTM.GETLINK, linkMsg(data, attrs), 0, {
    ...ctx,
    object: ctx.object || linkRefText(ref),
  });
  const m = msgs.find((x): x is rt.LinkMessage => x.kind === "link");
  if (!m) throw DataplaneError.of(ctx, "ENODEV", `no reply for link ${linkRefText(ref)}`);
  return toLink(m);
}

function linkMsg(data: rt.Link, attrs: ifla.LinkAttrs): MessageBuilder {
  return (out) => netlink.rt.formatLinkMessage({ kind: "link", data, attrs }, out);
}

function toLink(m: rt.LinkMessage): Link {
  const a = m.attrs;
  const info = decodeLinkInfo(a.linkinfo);
  const link: Link = {
    index: m.data.index ?? 0,
    name: a.ifname ?? "",
    mtu: a.mtu ?? 0,
    up: m.data.flags?.up === true,
    lowerUp: m.data.flags?.lowerUp === true,
    operState: OPER_STATES[a.operstate ?? 0] ?? `state-${a.operstate}`,
  };
  if (info.kind !== undefined) link.kind = info.kind;
  if (a.address && a.address.length === 6) link.mac = formatMac(a.address);
  if (a.ifalias) link.alias = a.ifalias;
  if (a.master) link.masterIndex = a.master;
  if (a.link && a.link.length >= 4) {
    const parent = getU32(a.link);
    if (parent !== 0) link.parentIndex = parent;
  }
  if (a.linkNetnsid !== undefined && a.linkNetnsid >= 0) link.linkNetnsId = a.linkNetnsid;
  if (info.vxlan) link.vxlan = info.vxlan;
  return link;
}

function checkName(name: string, ctx: OpContext): void {
  const problem = linkNameProblem(name);
  if (problem) throw DataplaneError.of({ ...ctx, object: name }, "EINVAL", problem);
}

function checkMtu(mtu: number | undefined, ctx: OpContext): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 0xffff))
    throw DataplaneError.of(ctx, "EINVAL", `MTU ${mtu} is not an integer in 68..65535`);
}

function macBytes(mac: string | undefined, ctx: OpContext): Buffer | undefined {
  if (mac === undefined) return undefined;
  const b = parseMac(mac);
  if (!b) throw DataplaneError.of(ctx, "EINVAL", `"${mac}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  return b;
}

function checkAlias(alias: string | undefined, ctx: OpContext): void {
  if (alias !== undefined && Buffer.byteLength(alias) > MAX_LINK_ALIAS)
    throw DataplaneError.of(ctx, "EINVAL", `alias is longer than ${MAX_LINK_ALIAS} bytes`);
}

function ipArg(s: string | undefined, what: string, ctx: OpContext): ParsedIp | undefined {
  if (s === undefined) return undefined;
  const ip = parseIp(s);
  if (!ip) throw DataplaneError.of(ctx, "EINVAL", `${what} "${s}" is not an IP address`);
  return ip;
}

function upFlags(up: boolean | undefined): Pick<rt.Link, "flags" | "change"> {
  if (up === undefined) return {};
  return { flags: up ? { up: true } : {}, change: { up: true } };
}

/** Link operations in one namespace. */
export class LinkOps {
  constructor(private readonly ns: NsContext) {}

  /** All links in the namespace. */
  async list(): Promise<Link[]> {
    const msgs = await this.ns.rtnl.request(
      RTM.GETLINK,
      linkMsg({}, { extMask: EXT_MASK_SKIP_STATS }),
      NLM_F.DUMP,
      this.ns.ctx("link list", "*"),
    );
    return msgs.filter((m): m is rt.LinkMessage => m.kind === "link").map(toLink);
  }

  /** One link by name or index; throws ENODEV if there is none. */
  get(ref: LinkRef): Promise<Link> {
    return getLink(this.ns, ref, this.ns.ctx("link get", linkRefText(ref)));
  }

  /** One link by name or index, or undefined if there is none. */
  async find(ref: LinkRef): Promise<Link | undefined> {
    try {
      return await this.get(ref);
    } catch (err) {
      if (isErrno(err, "ENODEV")) return undefined;
      throw err;
    }
  }

  /** The index of a link by name (numbers are returned as they are). */
  index(ref: LinkRef): Promise<number> {
    return resolveLinkIndex(this.ns, ref, this.ns.ctx("link get", linkRefText(ref)));
  }

  /** Links whose alias starts with `prefix` (orphan collection: the forwarder tags links with its ids). */
  async listByAliasPrefix(prefix: string): Promise<Link[]> {
    return (await this.list()).filter((l) => l.alias?.startsWith(prefix) === true);
  }

  /**
   * Creates a veth pair; the peer is created directly inside `spec.peer.netns` (IFLA_NET_NS_FD in the peer
   * info). One RTM_NEWLINK carries names, MTUs, MACs, the local up flag and master; aliases and bringing
   * the peer up need follow-up requests, and if one of those fails the pair is deleted again.
   */
  async createVeth(spec: VethSpec): Promise<void> {
    const ctx = this.ns.ctx("link add veth", spec.name);
    checkName(spec.name, ctx);
    checkName(spec.peer.name, { ...ctx, op: "link add veth peer" });
    checkMtu(spec.mtu, ctx);
    checkMtu(spec.peer.mtu, ctx);
    checkAlias(spec.alias, ctx);
    checkAlias(spec.peer.alias, ctx);
    const peerNs = spec.peer.netns ?? this.ns;
    const sameNs = peerNs.inodeUrl === this.ns.inodeUrl;
    const peerAttrs: ifla.LinkAttrs = { ifname: spec.peer.name };
    if (!sameNs) peerAttrs.netNsFd = peerNs.fd;
    const peerMtu = spec.peer.mtu ?? spec.mtu;
    if (peerMtu !== undefined) peerAttrs.mtu = peerMtu;
    const peerMac = macBytes(spec.peer.mac, ctx);
    if (peerMac) peerAttrs.address = peerMac;
    const attrs = await this.commonAttrs(spec, ctx);
    // The peer cannot be brought up inside the create request: the kernel opens it before linking the two
    // ends and answers ENOTCONN. It is brought up by a follow-up request instead.
    attrs.linkinfo = vethLinkInfo({}, peerAttrs);
    await this.ns.rtnl.request(RTM.NEWLINK, linkMsg(upFlags(spec.up), attrs), NLM_F.CREATE | NLM_F.EXCL, ctx);
    await this.finishCreate(spec.name, ctx, async () => {
      if (spec.alias) await this.set(spec.name, { alias: spec.alias });
      const peerChanges: LinkChanges = {};
      if (spec.peer.alias) peerChanges.alias = spec.peer.alias;
      if (spec.peer.up) peerChanges.up = true;
      if (Object.keys(peerChanges).length > 0) await new LinkOps(peerNs).set(spec.peer.name, peerChanges);
    });
  }

  /** Creates a VXLAN device (learning off unless asked). */
  async createVxlan(spec: VxlanSpec): Promise<void> {
    const ctx = this.ns.ctx("link add vxlan", spec.name);
    checkName(spec.name, ctx);
    checkMtu(spec.mtu, ctx);
    checkAlias(spec.alias, ctx);
    if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni > 0xffffff)
      throw DataplaneError.of(ctx, "EINVAL", `VNI ${spec.vni} is not a 24-bit integer`);
    const port = spec.port ?? 4789;
    if (!Number.isInteger(port) || port < 1 || port > 0xffff)
      throw DataplaneError.of(ctx, "EINVAL", `UDP port ${port} is not in 1..65535`);
    const remote = ipArg(spec.remote, "remote", ctx);
    const local = ipArg(spec.local, "local", ctx);
    if (remote && local && remote.family !== local.family)
      throw DataplaneError.of(ctx, "EINVAL", "remote and local addresses must be of one family");
    const underlayIndex =
      spec.underlay === undefined
        ? undefined
        : await resolveLinkIndex(this.ns, spec.underlay, { ...ctx, op: "link add vxlan: underlay" });
    const attrs = await this.commonAttrs(spec, ctx);
    const target = spec.netns && spec.netns.inodeUrl !== this.ns.inodeUrl ? spec.netns : undefined;
    if (target) attrs.netNsFd = target.fd;
    attrs.linkinfo = vxlanLinkInfo({
      vni: spec.vni,
      port,
      learning: spec.learning ?? false,
      ...(remote ? { remote } : {}),
      ...(local ? { local } : {}),
      ...(underlayIndex !== undefined ? { underlayIndex } : {}),
      ...(spec.ttl !== undefined ? { ttl: spec.ttl } : {}),
    });
    await this.ns.rtnl.request(RTM.NEWLINK, linkMsg(upFlags(spec.up), attrs), NLM_F.CREATE | NLM_F.EXCL, ctx);
    const where = target ? new LinkOps(target) : this;
    await where.finishCreate(spec.name, ctx, async () => {
      if (spec.alias) await where.set(spec.name, { alias: spec.alias });
    });
  }

  /** Creates a Linux bridge. */
  async createBridge(spec: BridgeSpec): Promise<void> {
    const ctx = this.ns.ctx("link add bridge", spec.name);
    checkName(spec.name, ctx);
    checkMtu(spec.mtu, ctx);
    checkAlias(spec.alias, ctx);
    const attrs = await this.commonAttrs(spec, ctx);
    attrs.linkinfo = plainLinkInfo("bridge");
    await this.ns.rtnl.request(RTM.NEWLINK, linkMsg(upFlags(spec.up), attrs), NLM_F.CREATE | NLM_F.EXCL, ctx);
    await this.finishCreate(spec.name, ctx, async () => {
      if (spec.alias) await this.set(spec.name, { alias: spec.alias });
    });
  }

  /**
   * Changes several attributes of a link in one RTM_SETLINK request. Note that the kernel applies them one
   * by one and stops at the first failure (it is not transactional).
   */
  async set(ref: LinkRef, changes: LinkChanges): Promise<void> {
    const what = Object.keys(changes).join(",") || "nothing";
    const ctx = this.ns.ctx(`link set ${what}`, linkRefText(ref));
    if (changes.name !== undefined) checkName(changes.name, ctx);
    checkMtu(changes.mtu, ctx);
    checkAlias(changes.alias, ctx);
    const attrs: ifla.LinkAttrs = {};
    if (changes.name !== undefined) attrs.ifname = changes.name;
    if (changes.mtu !== undefined) attrs.mtu = changes.mtu;
    const mac = macBytes(changes.mac, ctx);
    if (mac) attrs.address = mac;
    if (changes.alias !== undefined) attrs.ifalias = changes.alias;
    if (changes.master !== undefined) {
      attrs.master =
        changes.master === null
          ? 0
          : await resolveLinkIndex(this.ns, changes.master, { ...ctx, op: `${ctx.op}: master` });
    }
    // The kernel finds a link by IFLA_IFNAME when ifi_index is 0 (ENODEV if there is none), so a name needs
    // no lookup first — except for a rename, where IFLA_IFNAME carries the new name.
    if (typeof ref === "string" && changes.name === undefined) {
      checkName(ref, ctx);
      attrs.ifname = ref;
      await this.ns.rtnl.request(RTM.SETLINK, linkMsg({ index: 0, ...upFlags(changes.up) }, attrs), 0, ctx);
      return;
    }
    const index = await resolveLinkIndex(this.ns, ref, ctx);
    await this.ns.rtnl.request(RTM.SETLINK, linkMsg({ index, ...upFlags(changes.up) }, attrs), 0, ctx);
  }

  setUp(ref: LinkRef): Promise<void> {
    return this.set(ref, { up: true });
  }

  setDown(ref: LinkRef): Promise<void> {
    return this.set(ref, { up: false });
  }

  setMtu(ref: LinkRef, mtu: number): Promise<void> {
    return this.set(ref, { mtu });
  }

  setMac(ref: LinkRef, mac: string): Promise<void> {
    return this.set(ref, { mac });
  }

  /** Sets IFLA_IFALIAS; "" clears it. */
  setAlias(ref: LinkRef, alias: string): Promise<void> {
    return this.set(ref, { alias });
  }

  /** Renames a link (kernels before 6.2 answer EBUSY unless it is down). */
  rename(ref: LinkRef, name: string): Promise<void> {
    return this.set(ref, { name });
  }

  /** Enslaves a link to a bridge, or releases it with null. */
  setMaster(ref: LinkRef, master: LinkRef | null): Promise<void> {
    return this.set(ref, { master });
  }

  /**
   * Moves a link into another namespace (by fd), optionally renaming it there and bringing it up. The
   * rename happens in the same request; if the kernel moved the link but failed to rename it, the link is
   * moved back, so a failure leaves the link where it was.
   */
  async moveTo(ref: LinkRef, target: NsContext, opts: MoveOptions = {}): Promise<void> {
    const ctx = this.ns.ctx(`link move to ${target.label}`, linkRefText(ref));
    if (opts.name !== undefined) checkName(opts.name, ctx);
    const link = await getLink(this.ns, ref, ctx);
    const newName = opts.name ?? link.name;
    const targetLinks = new LinkOps(target);
    if (await targetLinks.find(newName))
      throw DataplaneError.of(ctx, "EEXIST", `${target.label} already has an interface named ${newName}`);
    const attrs: ifla.LinkAttrs = { netNsFd: target.fd };
    if (newName !== link.name) attrs.ifname = newName;
    try {
      await this.ns.rtnl.request(RTM.SETLINK, linkMsg({ index: link.index }, attrs), 0, ctx);
    } catch (err) {
      // Moved under the old name but not renamed? Put it back.
      if (newName !== link.name && (await targetLinks.find(link.name).catch(() => undefined))) {
        await targetLinks.moveTo(link.name, this.ns).catch(() => undefined);
      }
      throw err;
    }
    if (opts.up) await targetLinks.setUp(newName);
  }

  /** Deletes a link (deleting one end of a veth deletes both). Deletes are slow in the kernel (~20 ms). */
  async delete(ref: LinkRef, opts: DeleteOptions = {}): Promise<void> {
    const ctx = this.ns.ctx("link del", linkRefText(ref));
    const index = linkRefIndex(ref);
    const data: rt.Link = index !== undefined ? { index } : {};
    const attrs: ifla.LinkAttrs = {};
    if (typeof ref === "string") {
      checkName(ref, ctx);
      attrs.ifname = ref;
    }
    try {
      await this.ns.rtnl.request(RTM.DELLINK, linkMsg(data, attrs), 0, ctx);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENODEV")) return;
      throw err;
    }
  }

  /** IFLA_* attributes shared by every create request. */
  private async commonAttrs(spec: LinkCommon, ctx: OpContext): Promise<ifla.LinkAttrs> {
    const attrs: ifla.LinkAttrs = { ifname: spec.name };
    if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
    const mac = macBytes(spec.mac, ctx);
    if (mac) attrs.address = mac;
    if (spec.master !== undefined)
      attrs.master = await resolveLinkIndex(this.ns, spec.master, { ...ctx, op: `${ctx.op}: master` });
    return attrs;
  }

  /** Runs the follow-up steps of a create; on failure deletes the new link so nothing half-made remains. */
  private async finishCreate(name: string, ctx: OpContext, steps: () => Promise<void>): Promise<void> {
    try {
      await steps();
    } catch (err) {
      try {
        await this.delete(name, { missingOk: true });
      } catch (cleanupErr) {
        throw new DataplaneError(ctx, (err as DataplaneError).errno ?? 5, {
          detail: `${(err as Error).message}; and rolling back failed: ${(cleanupErr as Error).message}`,
          cause: err,
        });
      }
      throw err;
    }
  }
}
