// IFLA_LINKINFO encoding and decoding. The `netlink` package types IFLA_LINKINFO as an opaque Buffer; it
// does have formatters for the nested pieces (IFLA_INFO_*, IFLA_VXLAN_*, VETH_INFO_PEER), so this file
// composes them into the bytes the kernel expects:
//
//   IFLA_LINKINFO
//     IFLA_INFO_KIND  "veth" | "vxlan" | "bridge"
//     IFLA_INFO_DATA
//       veth:   VETH_INFO_PEER = struct ifinfomsg + peer IFLA_* attributes (IFLA_IFNAME, IFLA_NET_NS_FD, ...)
//       vxlan:  IFLA_VXLAN_ID, _GROUP/_GROUP6 (remote), _LOCAL/_LOCAL6, _LINK, _PORT (big-endian), _LEARNING
//       bridge: (none)
import netlink from "netlink";
import type { StreamData, ifla, rt } from "netlink";
import type { ParsedIp } from "./codec.js";
import { formatIp } from "./codec.js";

const iflaStructs = netlink.ifla;
const rtStructs = netlink.rt;

/** Renders a `netlink` StreamData (buffers or a writer function) into one Buffer. */
export function render(data: StreamData): Buffer {
  const out = new netlink.AttrStream();
  out.emit(data);
  return Buffer.concat(out.bufs);
}

/** The ifinfomsg + attributes of a link, as the package formats them, rendered to bytes. */
export function renderLinkMessage(data: rt.Link, attrs: ifla.LinkAttrs): Buffer {
  return Buffer.concat([rtStructs.formatLink(data), render(iflaStructs.formatLinkAttrs(attrs))]);
}

/** IFLA_LINKINFO for a veth whose peer is described by `peerData` / `peerAttrs` (may carry netNsFd). */
export function vethLinkInfo(peerData: rt.Link, peerAttrs: ifla.LinkAttrs): Buffer {
  const peer = renderLinkMessage(peerData, peerAttrs);
  const data = render(iflaStructs.formatVethInfo({ peer }));
  return render(iflaStructs.formatInfo({ kind: "veth", data }));
}

export interface VxlanParams {
  vni: number;
  remote?: ParsedIp;
  local?: ParsedIp;
  port: number;
  underlayIndex?: number;
  learning: boolean;
  ttl?: number;
}

/** IFLA_LINKINFO for a VXLAN device. */
export function vxlanLinkInfo(p: VxlanParams): Buffer {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(p.port);
  const x: ifla.Vxlan = { id: p.vni, port, learning: p.learning ? 1 : 0 };
  if (p.remote) {
    if (p.remote.family === 4) x.group = p.remote.bytes;
    else x.group6 = p.remote.bytes;
  }
  if (p.local) {
    if (p.local.family === 4) x.local = p.local.bytes;
    else x.local6 = p.local.bytes;
  }
  if (p.underlayIndex !== undefined) x.link = p.underlayIndex;
  if (p.ttl !== undefined) x.ttl = p.ttl;
  const data = render(iflaStructs.formatVxlan(x));
  return render(iflaStructs.formatInfo({ kind: "vxlan", data }));
}

/** IFLA_LINKINFO for a kind without IFLA_INFO_DATA (bridge, dummy, ...). */
export function plainLinkInfo(kind: string): Buffer {
  return render(iflaStructs.formatInfo({ kind }));
}

/** VXLAN parameters read back from the kernel. */
export interface VxlanInfo {
  vni: number;
  /** Remote (unicast) or group (multicast) address, if set. */
  remote?: string;
  local?: string;
  port: number;
  /** Index of the underlay interface, if bound to one. */
  underlayIndex?: number;
  learning: boolean;
}

export interface DecodedLinkInfo {
  kind?: string;
  slaveKind?: string;
  vxlan?: VxlanInfo;
}

/** Decodes IFLA_LINKINFO (kind, and the VXLAN parameters for vxlan links). */
export function decodeLinkInfo(buf: Buffer | undefined): DecodedLinkInfo {
  if (!buf) return {};
  const info = iflaStructs.parseInfo(buf);
  const out: DecodedLinkInfo = {};
  if (info.kind !== undefined) out.kind = info.kind;
  if (info.slaveKind !== undefined) out.slaveKind = info.slaveKind;
  if (info.kind === "vxlan" && info.data) {
    const v = iflaStructs.parseVxlan(info.data);
    const vx: VxlanInfo = {
      vni: v.id ?? 0,
      port: v.port && v.port.length >= 2 ? v.port.readUInt16BE(0) : 0,
      learning: (v.learning ?? 0) !== 0,
    };
    const remote = v.group ?? v.group6;
    if (remote && !remote.every((b) => b === 0)) vx.remote = formatIp(remote);
    const local = v.local ?? v.local6;
    if (local && !local.every((b) => b === 0)) vx.local = formatIp(local);
    if (v.link) vx.underlayIndex = v.link;
    out.vxlan = vx;
  }
  return out;
}
