// The objects a fresh TF config database holds (spec §2.5, Appendix A), created at start when absent so a
// restart with a state file changes nothing: default-domain and its projects, the default IPAM, the
// pre-provisioned VNs, the global system and vrouter configs, and one virtual-router per emulated compute.
import type { VncApi } from "./api.js";

export interface Compute {
  name: string;
  ip: string;
}

const gsc = "default-global-system-config";

export function seedDefaults(api: VncApi, computes: readonly Compute[]): void {
  const ensure = (type: string, fqName: string[], body: Record<string, unknown> = {}): void => {
    if (!api.store.recordByFqName(type, fqName)) api.create(type, { ...body, fq_name: fqName });
  };
  ensure("domain", ["default-domain"]);
  ensure("global-system-config", [gsc], { autonomous_system: 64512 });
  ensure("global-vrouter-config", [gsc, "default-global-vrouter-config"], {
    encapsulation_priorities: { encapsulation: ["VXLAN", "MPLSoUDP", "MPLSoGRE"] },
    vxlan_network_identifier_mode: "automatic",
    linklocal_services: { linklocal_service_entry: [] },
  });
  ensure("project", ["default-domain", "default-project"]);
  ensure("project", ["default-domain", "k8s-default"]);
  ensure("network-ipam", ["default-domain", "default-project", "default-network-ipam"], {
    network_ipam_mgmt: { ipam_dns_method: "default-dns-server" },
  });
  for (const vn of ["ip-fabric", "__link_local__", "default-virtual-network"])
    ensure("virtual-network", ["default-domain", "default-project", vn]);

  for (const c of computes) {
    const fq = [gsc, c.name];
    const vr = api.store.recordByFqName("virtual-router", fq);
    if (!vr) api.create("virtual-router", { fq_name: fq, virtual_router_ip_address: c.ip });
    else if (vr.props.virtual_router_ip_address !== c.ip)
      api.update("virtual-router", vr.uuid, { virtual_router_ip_address: c.ip });
  }
}
