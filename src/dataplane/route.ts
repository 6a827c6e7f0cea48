// Routes: add / replace / delete / list, with destination prefix, gateway, preferred source (prefsrc),
// output interface, scope (link for on-link routes), table (main by default), metric and onlink.
import netlink from "netlink";
import type { rt } from "netlink";
import type { LinkRef, NsContext } from "./context.js";
import { linkRefText } from "./context.js";
import { DataplaneError, isErrno, type OpContext } from "./errors.js";
import { resolveLinkIndex } from "./link.js";
import {
  AF_INET,
  AF_INET6,
  afOf,
  formatIp,
  maskBytes,
  parseCidr,
  parseIp,
  type Family,
  type ParsedIp,
} from "./nl/codec.js";
import { NLM_F, RTM, type MessageBuilder } from "./nl/socket.js";

/** The main routing table (RT_TABLE_MAIN). */
export const TABLE_MAIN = 254;

const SCOPES = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 } as const;
export type RouteScopeName = Exclude<keyof typeof SCOPES, "nowhere">;

const RTPROT_STATIC = 4;
const RTN_UNICAST = 1;
/** RTNH_F_ONLINK: treat the gateway as directly reachable on the output interface. */
const RTNH_F_ONLINK = 4;
/** RT_TABLE_COMPAT: rtm_table value when the real table id (≥256) is carried in RTA_TABLE. */
const RT_TABLE_COMPAT = 252;

export interface RouteSpec {
  /** Destination prefix ("10.0.0.0/8", "fd00::/64"), a host address (/32, /128), or "default". */
  dst: string;
  /** Next hop. */
  gateway?: string;
  /** Preferred source address for locally generated packets (RTA_PREFSRC). */
  src?: string;
  /** Output interface. */
  dev?: LinkRef;
  /** Default: "link" for a route with a device and no gateway (on-link), else "universe". */
  scope?: RouteScopeName;
  /** Routing table id (default main, 254). */
  table?: number;
  /** Route priority / metric. */
  metric?: number;
  /** The gateway is on the link even without a connected route covering it (RTNH_F_ONLINK). */
  onlink?: boolean;
}

export interface Route {
  family: Family;
  /** "a.b.c.d/len", or "default" for a zero-length prefix. */
  dst: string;
  gateway?: string;
  src?: string;
  /** Output interface index. */
  oif?: number;
  scope: number;
  table: number;
  protocol: number;
  /** RTN_* type: 1 unicast, 2 local, 3 broadcast, … */
  type: number;
  metric?: number;
  onlink: boolean;
}

export interface RouteListOptions {
  family?: Family;
  /** Table id (default main); "all" for every table. */
  table?: number | "all";
  /** Only routes through this interface. */
  dev?: LinkRef;
}

export interface RouteDelOptions {
  /** Succeed if there is no such route (ESRCH). */
  missingOk?: boolean;
}

function routeMsg(data: rt.Route, attrs: rt.RouteAttrs): MessageBuilder {
  return (out) => netlink.rt.formatRouteMessage({ kind: "route", data, attrs }, out);
}

interface Encoded {
  data: rt.Route;
  attrs: rt.RouteAttrs;
}

/** Known family of a route from its destination, falling back to gateway/src for "default". */
function familyOf(spec: RouteSpec, gw?: ParsedIp, src?: ParsedIp): Family {
  const dst = spec.dst === "default" ? undefined : parseCidr(spec.dst);
  return dst?.family ?? gw?.family ?? src?.family ?? 4;
}

/** Turns a RouteSpec into an rtmsg + attributes. `forDelete` leaves protocol and scope as wildcards. */
async function encode(ns: NsContext, spec: RouteSpec, ctx: OpContext, forDelete: boolean): Promise<Encoded> {
  const gw = spec.gateway === undefined ? undefined : parseIp(spec.gateway);
  if (spec.gateway !== undefined && !gw)
    throw DataplaneError.of(ctx, "EINVAL", `gateway "${spec.gateway}" is not an IP address`);
  const src = spec.src === undefined ? undefined : parseIp(spec.src);
  if (spec.src !== undefined && !src)
    throw DataplaneError.of(ctx, "EINVAL", `src "${spec.src}" is not an IP address`);
  const family = familyOf(spec, gw, src);
  const dst =
    spec.dst === "default"
      ? { bytes: Buffer.alloc(family === 4 ? 4 : 16), prefixLen: 0, family }
      : parseCidr(spec.dst);
  if (!dst) throw DataplaneError.of(ctx, "EINVAL", `"${spec.dst}" is not a prefix, an address or "default"`);
  for (const [what, ip] of [
    ["gateway", gw],
    ["src", src],
  ] as const) {
    if (ip && ip.family !== family)
      throw DataplaneError.of(ctx, "EINVAL", `${what} ${ip.text} is not of the destination's family`);
  }
  if (!maskBytes(dst.bytes, dst.prefixLen).equals(dst.bytes))
    throw DataplaneError.of(ctx, "EINVAL", `${spec.dst} has host bits set beyond /${dst.prefixLen}`);
  const table = spec.table ?? TABLE_MAIN;
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff)
    throw DataplaneError.of(ctx, "EINVAL", `table ${table} is not a valid table id`);
  const scope =
    spec.scope !== undefined
      ? SCOPES[spec.scope]
      : forDelete
        ? SCOPES.nowhere
        : !gw && spec.dev !== undefined
          ? SCOPES.link
          : SCOPES.universe;
  const data: rt.Route = {
    family: afOf(family),
    dstLen: dst.prefixLen,
    table: table < 256 ? table : RT_TABLE_COMPAT,
    protocol: (forDelete ? 0 : RTPROT_STATIC) as rt.RouteProtocol,
    scope,
    type: forDelete ? 0 : RTN_UNICAST,
  };
  if (spec.onlink) data.flags = { __unknown: RTNH_F_ONLINK };
  const attrs: rt.RouteAttrs = { table };
  if (dst.prefixLen > 0) attrs.dst = dst.bytes;
  if (gw) attrs.gateway = gw.bytes;
  if (src) attrs.prefsrc = src.bytes;
  if (spec.dev !== undefined) attrs.oif = await resolveLinkIndex(ns, spec.dev, ctx);
  if (spec.metric !== undefined) attrs.priority = spec.metric;
  return { data, attrs };
}

/** The package decodes known enum values to their names ("LINK"); turn them back into numbers. */
function enumNumber(v: number | string | undefined, e: Record<string, string | number>): number {
  if (typeof v === "number") return v;
  if (v === undefined) return 0;
  const n = e[v];
  return typeof n === "number" ? n : 0;
}

function toRoute(m: rt.RouteMessage): Route | undefined {
  const family: Family | undefined =
    m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (!family) return undefined;
  const dstLen = m.data.dstLen ?? 0;
  const r: Route = {
    family,
    dst: dstLen === 0 || !m.attrs.dst ? "default" : `${formatIp(m.attrs.dst)}/${dstLen}`,
    scope: enumNumber(m.data.scope, netlink.rt.RouteScope),
    table: m.attrs.table ?? m.data.table ?? 0,
    protocol: enumNumber(m.data.protocol, netlink.rt.RouteProtocol),
    type: enumNumber(m.data.type, netlink.rt.RouteType),
    onlink: ((m.data.flags?.__unknown ?? 0) & RTNH_F_ONLINK) !== 0,
  };
  if (m.attrs.gateway) r.gateway = formatIp(m.attrs.gateway);
  if (m.attrs.prefsrc) r.src = formatIp(m.attrs.prefsrc);
  if (m.attrs.oif !== undefined) r.oif = m.attrs.oif;
  if (m.attrs.priority !== undefined) r.metric = m.attrs.priority;
  return r;
}

function describe(spec: RouteSpec): string {
  const parts = [spec.dst];
  if (spec.gateway) parts.push(`via ${spec.gateway}`);
  if (spec.dev !== undefined) parts.push(`dev ${linkRefText(spec.dev)}`);
  if (spec.src) parts.push(`src ${spec.src}`);
  if (spec.table !== undefined && spec.table !== TABLE_MAIN) parts.push(`table ${spec.table}`);
  return parts.join(" ");
}

/** Route operations in one namespace. */
export class RouteOps {
  constructor(private readonly ns: NsContext) {}

  /** Adds a route; EEXIST if an identical one is there (use replace to overwrite). */
  async add(spec: RouteSpec): Promise<void> {
    const ctx = this.ns.ctx("route add", describe(spec));
    const { data, attrs } = await encode(this.ns, spec, ctx, false);
    await this.ns.rtnl.request(RTM.NEWROUTE, routeMsg(data, attrs), NLM_F.CREATE | NLM_F.EXCL, ctx);
  }

  /** Adds a route or replaces the one with the same destination/table/metric. */
  async replace(spec: RouteSpec): Promise<void> {
    const ctx = this.ns.ctx("route replace", describe(spec));
    const { data, attrs } = await encode(this.ns, spec, ctx, false);
    await this.ns.rtnl.request(RTM.NEWROUTE, routeMsg(data, attrs), NLM_F.CREATE | NLM_F.REPLACE, ctx);
  }

  /** Deletes the route matching `spec` (unset fields match anything). */
  async del(spec: RouteSpec, opts: RouteDelOptions = {}): Promise<void> {
    const ctx = this.ns.ctx("route del", describe(spec));
    let enc: Encoded;
    try {
      enc = await encode(this.ns, spec, ctx, true);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ENODEV")) return;
      throw err;
    }
    try {
      await this.ns.rtnl.request(RTM.DELROUTE, routeMsg(enc.data, enc.attrs), 0, ctx);
    } catch (err) {
      if (opts.missingOk && isErrno(err, "ESRCH", "ENOENT")) return;
      throw err;
    }
  }

  /** Routes of the main table (or `opts.table`), optionally of one family / through one interface. */
  async list(opts: RouteListOptions = {}): Promise<Route[]> {
    const ctx = this.ns.ctx("route list", opts.dev === undefined ? "*" : linkRefText(opts.dev));
    const oif = opts.dev === undefined ? undefined : await resolveLinkIndex(this.ns, opts.dev, ctx);
    const table = opts.table ?? TABLE_MAIN;
    const msgs = await this.ns.rtnl.request(
      RTM.GETROUTE,
      routeMsg({ family: opts.family ? afOf(opts.family) : 0 }, {}),
      NLM_F.DUMP,
      ctx,
    );
    const out: Route[] = [];
    for (const m of msgs) {
      if (m.kind !== "route") continue;
      const r = toRoute(m);
      if (!r) continue;
      if (opts.family && r.family !== opts.family) continue;
      if (table !== "all" && r.table !== table) continue;
      if (oif !== undefined && r.oif !== oif) continue;
      out.push(r);
    }
    return out;
  }
}
