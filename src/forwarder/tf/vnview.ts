// Reading a virtual network as TF does, shared by the tf-vn endpoint and the emulated agent: its subnets (on
// the VN's IPAM refs, or on a flat-subnet IPAM as kube-manager's networks have them) and whether it reaches
// outside (fabric SNAT, or a logical router with an external gateway that has this VN as an internal
// network — through a router-interface VMI, as Neutron/TF attach them, or a direct VN ref).
import type { VncClient, VncObject } from "./vnc.js";

/** The reads these views need: a VncClient, or a stand-in in tests. */
export type VncReader = Pick<VncClient, "tryRead" | "list">;

export interface IpamSubnet {
  subnet?: { ip_prefix?: string; ip_prefix_len?: number };
  subnet_uuid?: string;
  default_gateway?: string;
  dns_server_address?: string;
  host_routes?: { route?: { prefix: string }[] };
}

/** A subnet's family as TF's instance_ip_family names it. */
export const subnetFamily = (s: IpamSubnet): "v4" | "v6" =>
  s.subnet?.ip_prefix?.includes(":") ? "v6" : "v4";

interface Ref {
  uuid: string;
  to?: string[];
  attr?: Record<string, unknown> | null;
}

export const refsOf = (o: VncObject | undefined, key: string): Ref[] =>
  Array.isArray(o?.[key]) ? (o[key] as Ref[]) : [];

/** The VN's subnets, IPv4 first; from a flat-subnet IPAM when the VN's refs carry none. */
export async function vnSubnets(vnc: VncReader, vn: VncObject): Promise<IpamSubnet[]> {
  const out: IpamSubnet[] = [];
  for (const r of refsOf(vn, "network_ipam_refs")) {
    const own = (r.attr as { ipam_subnets?: IpamSubnet[] } | null)?.ipam_subnets ?? [];
    if (own.length > 0) {
      out.push(...own);
      continue;
    }
    const ipam = await vnc.tryRead("network-ipam", r.uuid);
    out.push(...((ipam?.["ipam_subnets"] as { subnets?: IpamSubnet[] } | undefined)?.subnets ?? []));
  }
  const v6 = (s: IpamSubnet): number => (subnetFamily(s) === "v6" ? 1 : 0);
  return out.sort((a, b) => v6(a) - v6(b));
}

const lrType = (r: Ref): string | undefined =>
  (r.attr as { logical_router_virtual_network_type?: string } | null)?.logical_router_virtual_network_type;

/** Whether traffic of the VN leaves the cluster through SNAT. */
export async function vnHasSnat(vnc: VncReader, vn: VncObject): Promise<boolean> {
  return vn["fabric_snat"] === true || (await snatRouterOf(vnc, vn)) !== undefined;
}

/** The logical router with an external gateway that has the VN as an internal network, if any. */
export async function snatRouterOf(vnc: VncReader, vn: VncObject): Promise<VncObject | undefined> {
  for (const lr of await vnc.list("logical-router", { detail: true })) {
    const vnRefs = refsOf(lr, "virtual_network_refs");
    const external =
      vnRefs.some((r) => lrType(r) === "ExternalGateway") || lr["logical_router_gateway_external"] === true;
    if (external && (await routerInternalVns(vnc, lr)).includes(vn.uuid)) return lr;
  }
  return undefined;
}

/** The uuids of a router's internal VNs: direct VN refs and the VNs of its interfaces. */
export async function routerInternalVns(vnc: VncReader, lr: VncObject): Promise<string[]> {
  const out = new Set(
    refsOf(lr, "virtual_network_refs")
      .filter((r) => lrType(r) !== "ExternalGateway")
      .map((r) => r.uuid),
  );
  for (const port of refsOf(lr, "virtual_machine_interface_refs")) {
    const vmi = await vnc.tryRead("virtual-machine-interface", port.uuid);
    for (const r of refsOf(vmi, "virtual_network_refs")) out.add(r.uuid);
  }
  return [...out];
}
