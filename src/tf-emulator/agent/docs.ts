// The documents the agent answers with (port_ipc_handler.cc): a port's config on GET /vm and /port
// (`MakeJsonFromVmi`: v4 fields when the port has an IPv4 address, v6 fields when it has an IPv6 one, no v6
// prefix length) and a VM's interfaces on GET /vm-cfg (`MakeJsonFromVmiConfig`).
import type { VncObject } from "../../forwarder/tf/vnc.js";
import { addrOf, type ResolvedPort } from "./resolve.js";

const author = "nsm tf-emulator agent";
/** `VmInterface::kInvalidVlanId`: the agent's vlan fields are unsigned 16-bit, this is "none". */
export const noVlan = 0xffff;

export function portDoc(p: ResolvedPort, hostIf: string): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    id: p.vmiUuid,
    "instance-id": p.vmUuid,
    "vn-id": p.vnUuid,
    "vm-project-id": p.projectUuid,
    "mac-address": p.mac,
    "system-name": hostIf,
    "rx-vlan-id": noVlan,
    "tx-vlan-id": noVlan,
    "vhostuser-mode": 0,
  };
  const v4 = addrOf(p, 4);
  if (v4)
    Object.assign(doc, { "ip-address": v4.ip, plen: v4.plen, "dns-server": v4.dns, gateway: v4.gateway });
  const v6 = addrOf(p, 6);
  if (v6) Object.assign(doc, { "v6-ip-address": v6.ip, "v6-dns-server": v6.dns, "v6-gateway": v6.gateway });
  return { ...doc, author, time: new Date().toISOString() };
}

/** One /vm-cfg item; `vmKey` is `vm-uuid` (R2011+) or `instance-id` (older agents). */
export function vmCfgItem(vmi: VncObject, vmUuid: string, vmKey: string): Record<string, unknown> {
  const vnRef = (vmi["virtual_network_refs"] as { uuid: string; to: string[] }[] | undefined)?.[0];
  const kv =
    (vmi["annotations"] as { key_value_pair?: { key: string; value: string }[] } | undefined)
      ?.key_value_pair ?? [];
  const props = vmi["virtual_machine_interface_properties"] as
    { sub_interface_vlan_tag?: number } | undefined;
  const tag = props?.sub_interface_vlan_tag;
  const sub = typeof tag === "number" && tag > 0;
  return {
    id: vmi.uuid,
    [vmKey]: vmUuid,
    "vn-id": vnRef?.uuid ?? "",
    "vn-name": vnRef?.to?.join(":") ?? "",
    "mac-address":
      (vmi["virtual_machine_interface_mac_addresses"] as { mac_address?: string[] } | undefined)
        ?.mac_address?.[0] ?? "",
    "sub-interface": sub,
    "vlan-id": sub ? tag : noVlan,
    ...(kv.length > 0 ? { annotations: kv.map((p) => `{${p.key}:${p.value}}`) } : {}),
  };
}
