// What an emulated agent reads about logical-router SNAT (the objects svc-monitor makes, vnc/svcmonitor.ts):
// for a VN behind a router, where its traffic for the outside goes (the SNAT instance's left port); for
// this compute, the SNAT instances scheduled on it (virtual-router → VM refs) and what they join.
import type { VncClient, VncObject } from "../../forwarder/tf/vnc.js";
import { textOf } from "../../forwarder/tf/keys.js";
import { refsOf, routerInternalVns, snatRouterOf, vnSubnets } from "../../forwarder/tf/vnview.js";
import { snatNames } from "../vnc/svcmonitor.js";

/** A SNAT instance's port: its address (first instance-ip) and MAC. */
export interface SnatPort {
  ip: string;
  mac: string;
}

/** A SNAT instance this compute hosts. */
export interface HostedSnat {
  routerUuid: string;
  left: SnatPort;
  /** The address of the external VN the outside sees. */
  right: SnatPort;
  /** The router's internal VNs the instance answers on: VNI and IPv4 subnets. */
  internal: { vni: number; subnets: string[] }[];
}

async function portOf(vnc: VncClient, vmiUuid: string): Promise<SnatPort | undefined> {
  const vmi = await vnc.tryRead("virtual-machine-interface", vmiUuid);
  const iipRef = refsOf(vmi, "instance_ip_back_refs")[0];
  const iip = iipRef && (await vnc.tryRead("instance-ip", iipRef.uuid));
  const ip = textOf(iip?.["instance_ip_address"]);
  const mac = (vmi?.["virtual_machine_interface_mac_addresses"] as { mac_address?: string[] } | undefined)
    ?.mac_address?.[0];
  return ip && mac ? { ip, mac } : undefined;
}

async function sidePort(
  vnc: VncClient,
  project: string[],
  lr: string,
  side: "left" | "right",
): Promise<SnatPort | undefined> {
  const vmi = await vnc
    .readByFqName("virtual-machine-interface", snatNames(project, lr).vmi(side))
    .catch(() => undefined);
  return vmi && portOf(vnc, vmi.uuid);
}

/** The left port of the SNAT instance the VN's traffic for the outside goes to; undefined when none. */
export async function snatSteering(vnc: VncClient, vn: VncObject): Promise<SnatPort | undefined> {
  const lr = await snatRouterOf(vnc, vn);
  return lr && sidePort(vnc, lr.fq_name.slice(0, -1), lr.uuid, "left");
}

/** The SNAT instances scheduled on this compute's virtual-router, complete ones only. */
export async function hostedSnat(
  vnc: VncClient,
  vrUuid: string,
  vniOf: (vn: VncObject) => number,
): Promise<HostedSnat[]> {
  const vr = await vnc.tryRead("virtual-router", vrUuid);
  const out: HostedSnat[] = [];
  for (const ref of refsOf(vr, "virtual_machine_refs")) {
    const m = /^(.+)__si_([0-9a-f-]{36})__\d+$/.exec(ref.to?.at(-1) ?? "");
    if (!m) continue;
    const [project, routerUuid] = [m[1]!.split("__"), m[2]!];
    const lr = await vnc.tryRead("logical-router", routerUuid);
    const left = await sidePort(vnc, project, routerUuid, "left");
    const right = await sidePort(vnc, project, routerUuid, "right");
    if (!lr || !left || !right) continue;
    const internal: HostedSnat["internal"] = [];
    for (const vnUuid of await routerInternalVns(vnc, lr)) {
      const vn = await vnc.tryRead("virtual-network", vnUuid);
      if (!vn) continue;
      const subnets = (await vnSubnets(vnc, vn))
        .map((s) => s.subnet)
        .filter((s) => s?.ip_prefix && !s.ip_prefix.includes(":"))
        .map((s) => `${s!.ip_prefix}/${s!.ip_prefix_len}`);
      internal.push({ vni: vniOf(vn), subnets });
    }
    out.push({ routerUuid, left, right, internal });
  }
  return out;
}
