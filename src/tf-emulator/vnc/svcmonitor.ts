// The part of TF's svc-monitor the emulator needs: its SNAT agent (snat_agent.py). A logical router with an
// external gateway VN and at least one interface gets one SNAT instance, a network namespace on one compute
// whose right interface holds an address of the gateway VN: the source the outside sees for every pod
// behind the router. svc-monitor makes it a service-instance `si_<lr uuid>` (netns-snat-template) with a
// left VN `snat-si-left_si_<lr uuid>` (100.64.0.0/29); the emulator makes the objects the agents act on —
// the left VN, the instance's virtual-machine, its left and right interfaces with their instance-ips, and
// the virtual-router → VM ref that schedules it — but not the service-instance/template objects it does
// not serve, and one instance rather than an active/standby pair. Runs after every write, so the objects
// come and go with the router, as svc-monitor makes them a moment after the router changes.
import type { VncApi } from "./api.js";
import type { StoredObject, StoredRef } from "./store.js";

const leftPrefix = "snat-si-left_";
/** svc_info._VN_SNAT_SUBNET_CIDR. */
export const snatLeftSubnet = { ip_prefix: "100.64.0.0", ip_prefix_len: 29 };
const defaultIpam = ["default-domain", "default-project", "default-network-ipam"];

/** The names svc-monitor gives a router's SNAT objects (the service-instance is `si_<lr uuid>`). */
export function snatNames(
  project: readonly string[],
  lrUuid: string,
): {
  leftVn: string[];
  vm: string[];
  vmi: (side: "left" | "right") => string[];
  iip: (side: "left" | "right") => string[];
} {
  const si = `si_${lrUuid}`;
  // Netns service VMs are named <domain>__<project>__<si>__<index>, their ports <vm>__<side>__<index>.
  const vm = `${[...project, si].join("__")}__1`;
  return {
    leftVn: [...project, `${leftPrefix}${si}`],
    vm: [vm],
    vmi: (side) => [...project, `${vm}__${side}__1`],
    iip: (side) => [`${vm}__${side}__1`],
  };
}

const lrType = (r: StoredRef): string | undefined =>
  (r.attr as { logical_router_virtual_network_type?: string } | null)?.logical_router_virtual_network_type;

/** The router's external gateway VN, if SNAT applies to it (snat-routing routers with an interface). */
export function snatGateway(lr: StoredObject): string | undefined {
  if (lr.props.logical_router_type === "vxlan-routing") return undefined;
  const vns = lr.refs["virtual-network"] ?? [];
  const gw = vns.find((r) => lrType(r) === "ExternalGateway");
  const interfaces =
    (lr.refs["virtual-machine-interface"] ?? []).length > 0 ||
    vns.some((r) => lrType(r) === "InternalVirtualNetwork");
  return gw && interfaces ? gw.uuid : undefined;
}

type Log = (msg: string, fields: Record<string, unknown>) => void;

export class SnatMonitor {
  constructor(
    private readonly api: VncApi,
    private readonly log: Log = () => {},
  ) {}

  /** Makes every router's SNAT objects match the router; never throws (a failure is logged, retried later). */
  reconcile(): void {
    const { store } = this.api;
    const wanted = new Set<string>();
    for (const lr of store.records("logical-router")) {
      const gw = snatGateway(lr);
      if (!gw) continue;
      try {
        this.ensure(lr, gw);
        wanted.add(snatNames(lr.fq_name.slice(0, -1), lr.uuid).leftVn.join(":"));
      } catch (err) {
        this.log("SNAT instance not made", { router: lr.uuid, error: (err as Error).message });
      }
    }
    for (const vn of store.records("virtual-network")) {
      const m = /^snat-si-left_si_([0-9a-f-]{36})$/.exec(vn.fq_name.at(-1) ?? "");
      if (!m || wanted.has(vn.fq_name.join(":"))) continue;
      try {
        this.remove(vn.fq_name.slice(0, -1), m[1]!);
      } catch (err) {
        this.log("SNAT instance not removed", { router: m[1], error: (err as Error).message });
      }
    }
  }

  private ensure(lr: StoredObject, gatewayVn: string): void {
    const { api } = this;
    const { store } = api;
    const n = snatNames(lr.fq_name.slice(0, -1), lr.uuid);
    const find = (type: string, fq: string[]): StoredObject | undefined => store.recordByFqName(type, fq);
    const leftVn =
      find("virtual-network", n.leftVn) ??
      api.create("virtual-network", {
        fq_name: n.leftVn,
        parent_type: "project",
        network_ipam_refs: [{ to: defaultIpam, attr: { ipam_subnets: [{ subnet: snatLeftSubnet }] } }],
      });
    const vm = find("virtual-machine", n.vm) ?? api.create("virtual-machine", { fq_name: n.vm });
    for (const [side, vn] of [
      ["left", leftVn.uuid],
      ["right", gatewayVn],
    ] as const) {
      let vmi = find("virtual-machine-interface", n.vmi(side));
      // The gateway may have changed: the right port follows it.
      if (vmi && vmi.refs["virtual-network"]?.[0]?.uuid !== vn) {
        this.deletePort(vmi, n.iip(side));
        vmi = undefined;
      }
      vmi ??= api.create("virtual-machine-interface", {
        fq_name: n.vmi(side),
        parent_type: "project",
        virtual_network_refs: [{ uuid: vn }],
        virtual_machine_refs: [{ uuid: vm.uuid }],
        virtual_machine_interface_properties: { service_interface_type: side },
      });
      if (!find("instance-ip", n.iip(side)))
        api.create("instance-ip", {
          fq_name: n.iip(side),
          instance_ip_family: "v4",
          virtual_network_refs: [{ uuid: vn }],
          virtual_machine_interface_refs: [{ uuid: vmi.uuid }],
        });
    }
    this.schedule(vm);
  }

  /** Puts the instance on the virtual-router with the fewest SNAT instances (svc-monitor's scheduler). */
  private schedule(vm: StoredObject): void {
    const { api } = this;
    const routers = api.store.records("virtual-router");
    const hosts = (vr: StoredObject): StoredRef[] => vr.refs["virtual-machine"] ?? [];
    if (routers.some((vr) => hosts(vr).some((r) => r.uuid === vm.uuid))) return;
    const isSnat = (r: StoredRef): boolean =>
      /__si_[0-9a-f-]{36}__\d+$/.test(api.store.record(r.uuid)?.fq_name.at(-1) ?? "");
    const load = (vr: StoredObject): number => hosts(vr).filter(isSnat).length;
    const vr = [...routers].sort(
      (a, b) => load(a) - load(b) || a.fq_name.join(":").localeCompare(b.fq_name.join(":")),
    )[0];
    if (!vr) return; // no compute yet: scheduled when one registers
    api.update("virtual-router", vr.uuid, {
      virtual_machine_refs: [...hosts(vr).map((r) => ({ uuid: r.uuid, attr: r.attr })), { uuid: vm.uuid }],
    });
    this.log("SNAT instance scheduled", { vm: vm.fq_name[0], virtualRouter: vr.fq_name.at(-1) });
  }

  private remove(project: string[], lrUuid: string): void {
    const { api } = this;
    const { store } = api;
    const n = snatNames(project, lrUuid);
    for (const side of ["left", "right"] as const) {
      const vmi = store.recordByFqName("virtual-machine-interface", n.vmi(side));
      if (vmi) this.deletePort(vmi, n.iip(side));
    }
    const vm = store.recordByFqName("virtual-machine", n.vm);
    if (vm) {
      for (const vr of store.referrersOf(vm.uuid).filter((o) => o.type === "virtual-router"))
        api.update("virtual-router", vr.uuid, {
          virtual_machine_refs: (vr.refs["virtual-machine"] ?? [])
            .filter((r) => r.uuid !== vm.uuid)
            .map((r) => ({ uuid: r.uuid, attr: r.attr })),
        });
      api.delete("virtual-machine", vm.uuid, store.baseUrl);
    }
    const left = store.recordByFqName("virtual-network", n.leftVn);
    if (left) api.delete("virtual-network", left.uuid, store.baseUrl);
    this.log("SNAT instance removed", { router: lrUuid });
  }

  private deletePort(vmi: StoredObject, iipName: string[]): void {
    const { api } = this;
    const iip = api.store.recordByFqName("instance-ip", iipName);
    if (iip) api.delete("instance-ip", iip.uuid, api.store.baseUrl);
    api.delete("virtual-machine-interface", vmi.uuid, api.store.baseUrl);
  }
}
