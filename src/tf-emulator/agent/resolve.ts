// What the emulated agent knows about a port, read from the config API. A real agent gets the same objects
// pushed by the control node over XMPP once the virtual-router → virtual-machine ref exists; the emulator
// reads them on demand, so "config not delivered yet" looks the same: 404 until everything is there.
import type { VncClient, VncObject } from "../../forwarder/tf/vnc.js";
import { textOf } from "../../forwarder/tf/keys.js";
import { contains, tryParseCidr, tryParseIp } from "../../networkservice/ipam/cidr.js";
import { refsOf, vnSubnets, type IpamSubnet } from "../../forwarder/tf/vnview.js";
import { snatSteering, type SnatPort } from "./snat.js";

/** One of the port's addresses (an instance-ip) with its subnet's gateway and DNS. */
export interface PortAddress {
  family: 4 | 6;
  ip: string;
  plen: number;
  gateway: string;
  dns: string;
  /** The subnet of the address, "prefix/len". */
  subnet: string;
}

export interface ResolvedPort {
  vmiUuid: string;
  vmUuid: string;
  vmName: string;
  vnUuid: string;
  vnName: string;
  projectUuid: string;
  mac: string;
  /** The port's primary address of each family its instance-ips hold, IPv4 first (the agent's primary_ip*). */
  addrs: PortAddress[];
  /** The VN's VNI: vxlan_network_identifier if configured, else the VN id. */
  vni: number;
  routeTargets: string[];
  /** Floating IPs mapped to this port. */
  floatingIps: string[];
  /** The VN's traffic leaves SNATed to this compute's fabric address (the VN's fabric_snat). */
  fabricSnat: boolean;
  /** The left port of the logical router's SNAT instance, where the VN's traffic for the outside goes. */
  snatVia?: SnatPort;
  /** The VN is a public (router_external) network: the gateway routes its addresses, no NAT. */
  routed: boolean;
}

/** The port's address of `family`, if it has one. */
export const addrOf = (p: ResolvedPort, family: 4 | 6): PortAddress | undefined =>
  p.addrs.find((a) => a.family === family);

/** The VN's VNI: vxlan_network_identifier when the global mode is "configured", else the VN id (spec §2.6). */
export function vnVni(vn: VncObject, mode: string): number {
  const props = vn["virtual_network_properties"] as { vxlan_network_identifier?: number } | undefined;
  const configured = mode === "configured" ? props?.vxlan_network_identifier : undefined;
  return configured || Number(vn["virtual_network_network_id"] ?? 0);
}

export function vnRouteTargets(vn: VncObject): string[] {
  return ((vn["route_target_list"] as { route_target?: string[] } | undefined)?.route_target ?? []).slice();
}

/** The port's config, or the name of what is still missing. */
export async function resolvePort(
  vnc: VncClient,
  vmUuid: string,
  vmiUuid: string,
  vniMode: string,
  snatOf: (vn: VncObject) => Promise<SnatPort | undefined> = (vn) => snatSteering(vnc, vn),
): Promise<ResolvedPort | { missing: string }> {
  const vmi = await vnc.tryRead("virtual-machine-interface", vmiUuid);
  if (!vmi) return { missing: `virtual-machine-interface ${vmiUuid}` };
  const vm = await vnc.tryRead("virtual-machine", vmUuid);
  if (!vm) return { missing: `virtual-machine ${vmUuid}` };
  const vnRef = refsOf(vmi, "virtual_network_refs")[0];
  if (!vnRef) return { missing: "virtual network of the interface" };
  const vn = await vnc.tryRead("virtual-network", vnRef.uuid);
  if (!vn) return { missing: `virtual-network ${vnRef.uuid}` };
  const iipRefs = refsOf(vmi, "instance_ip_back_refs");
  if (iipRefs.length === 0) return { missing: "instance-ip of the interface" };
  const subnets = await vnSubnets(vnc, vn);
  const addrs: PortAddress[] = [];
  for (const ref of iipRefs) {
    const iip = await vnc.tryRead("instance-ip", ref.uuid);
    const ip = iip?.["instance_ip_address"] as string | undefined;
    if (!iip || !ip) return { missing: `address of instance-ip ${ref.uuid}` };
    const family = tryParseIp(ip)?.family;
    // The first instance-ip of each family is the primary address the agent reports.
    if (!family || addrs.some((a) => a.family === family)) continue;
    const sn =
      subnets.find((s) => s.subnet_uuid === iip["subnet_uuid"]) ?? subnets.find((s) => inSubnet(ip, s));
    if (!sn?.subnet?.ip_prefix || sn.subnet.ip_prefix_len === undefined) return { missing: "IPAM subnet" };
    addrs.push({
      family,
      ip,
      plen: sn.subnet.ip_prefix_len,
      gateway: sn.default_gateway ?? "",
      dns: sn.dns_server_address ?? "",
      subnet: `${sn.subnet.ip_prefix}/${sn.subnet.ip_prefix_len}`,
    });
  }
  addrs.sort((a, b) => a.family - b.family);
  const macs = (vmi["virtual_machine_interface_mac_addresses"] as { mac_address?: string[] } | undefined)
    ?.mac_address;

  const floatingIps: string[] = [];
  for (const r of refsOf(vmi, "floating_ip_back_refs")) {
    const fip = await vnc.tryRead("floating-ip", r.uuid);
    const a = fip?.["floating_ip_address"];
    if (typeof a === "string") floatingIps.push(a);
  }
  const snatVia = await snatOf(vn);
  return {
    vmiUuid,
    vmUuid,
    vmName: vm.fq_name[vm.fq_name.length - 1]!,
    vnUuid: vn.uuid,
    vnName: vn.fq_name.join(":"),
    projectUuid: textOf(vmi["parent_uuid"]),
    mac: macs?.[0] ?? "",
    addrs,
    vni: vnVni(vn, vniMode),
    routeTargets: vnRouteTargets(vn),
    floatingIps,
    fabricSnat: vn["fabric_snat"] === true,
    ...(snatVia ? { snatVia } : {}),
    routed: vn["router_external"] === true,
  };
}

function inSubnet(ip: string, s: IpamSubnet): boolean {
  const p = s.subnet;
  if (!p?.ip_prefix || p.ip_prefix_len === undefined) return false;
  const net = tryParseCidr(`${p.ip_prefix}/${p.ip_prefix_len}`);
  const addr = tryParseIp(ip);
  return net !== undefined && addr !== undefined && contains(net, addr);
}
