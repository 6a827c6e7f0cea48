// The logical-router SNAT instances a compute hosts (svc-monitor schedules each on one compute): a private
// network namespace per router, as the agent's netns instance manager makes one, holding
//   - a left leg `l<vni>` on each internal VN's bridge, with the left port's MAC and address, and a route
//     to the VN's subnets there (the VRFs of every compute send what leaves the VN to this port);
//   - an uplink `up` to the compute, out of which everything is SNATed to the right port's address, an
//     address of the external VN, which the compute routes in and answers ARP for on the fabric.
// The instance's internal VNs must be plumbed on this compute (their bridges exist) before sync.
import type { Logger } from "pino";
import { replaceNftTable, writeSysctl, type Dataplane, type NetnsHandle } from "../../dataplane/index.js";
import { bridgeName, uplinkAddrs, type ComputePlumbing, type RoutedIn } from "./plumbing.js";
import type { HostedSnat } from "./snat.js";

const natTable = "tfemu_snat";

/** The compute ends of an instance's uplink and of its left leg on a VN's bridge. */
export const snatUplinkName = (slot: number): string => `tfs${slot}`;
export const snatLeftLegName = (vni: number): string => `tfl${vni}`;

interface Instance {
  ns: NetnsHandle;
  slot: number;
  /** What the namespace was built from: rebuilt when it changes. */
  key: string;
  vnis: number[];
}

export class SnatInstances {
  private readonly instances = new Map<string, Instance>();

  constructor(
    private readonly opts: { dp: Dataplane; ns: NetnsHandle; plumbing: ComputePlumbing; log: Logger },
  ) {}

  /** Makes the hosted instances exist as given; returns the right addresses to route in. */
  async sync(hosted: HostedSnat[]): Promise<Map<string, RoutedIn>> {
    const want = new Map(hosted.map((h) => [h.routerUuid, h]));
    for (const [router, inst] of this.instances)
      if (want.get(router) === undefined || keyOf(want.get(router)!) !== inst.key) await this.remove(router);
    const routed = new Map<string, RoutedIn>();
    for (const h of hosted) {
      const inst = this.instances.get(h.routerUuid) ?? (await this.create(h));
      routed.set(h.right.ip, { dev: snatUplinkName(inst.slot), via: uplinkAddrs(inst.slot).vrf4 });
    }
    return routed;
  }

  /** The VNIs the hosted instances sit on. */
  get vnis(): number[] {
    return [...this.instances.values()].flatMap((i) => i.vnis);
  }

  async cleanup(): Promise<void> {
    for (const router of [...this.instances.keys()]) await this.remove(router).catch(() => undefined);
  }

  private async create(h: HostedSnat): Promise<Instance> {
    const { dp, ns, plumbing, log } = this.opts;
    const slot = plumbing.takeSlot();
    const up = uplinkAddrs(slot);
    const sn = dp.newNetns();
    const inst: Instance = { ns: sn, slot, key: keyOf(h), vnis: h.internal.map((i) => i.vni) };
    this.instances.set(h.routerUuid, inst);
    try {
      writeSysctl(sn, "net/ipv4/ip_forward", "1");
      await ns.link.delete(snatUplinkName(slot), { missingOk: true });
      await ns.link.createVeth({
        name: snatUplinkName(slot),
        up: true,
        peer: { name: "up", netns: sn, up: true },
      });
      await ns.addr.add(snatUplinkName(slot), `${up.host4}/30`);
      await sn.addr.add("up", `${up.vrf4}/30`);
      await sn.route.replace({ dst: "0.0.0.0/0", gateway: up.host4, dev: "up" });
      for (const { vni, subnets } of h.internal) {
        const leg = `l${vni}`;
        await ns.link.delete(snatLeftLegName(vni), { missingOk: true });
        await ns.link.createVeth({
          name: snatLeftLegName(vni),
          up: true,
          master: bridgeName(vni),
          peer: { name: leg, netns: sn, mac: h.left.mac, up: true },
        });
        await sn.addr.add(leg, `${h.left.ip}/32`);
        for (const s of subnets) await sn.route.replace({ dst: s, dev: leg, src: h.left.ip });
      }
      replaceNftTable(
        sn,
        "ip",
        natTable,
        [
          "  chain postrouting {",
          "    type nat hook postrouting priority srcnat; policy accept;",
          `    oifname "up" snat ip to ${h.right.ip}`,
          "  }",
        ].join("\n"),
      );
    } catch (err) {
      await this.remove(h.routerUuid);
      throw err;
    }
    log.info(
      { router: h.routerUuid, source: h.right.ip, vnis: inst.vnis },
      "SNAT instance up on this compute",
    );
    return inst;
  }

  private async remove(router: string): Promise<void> {
    const { ns, plumbing, log } = this.opts;
    const inst = this.instances.get(router);
    if (!inst) return;
    this.instances.delete(router);
    // The namespace takes its ends of the legs with it; the compute ends go with them.
    inst.ns.close();
    for (const name of [snatUplinkName(inst.slot), ...inst.vnis.map(snatLeftLegName)])
      await ns.link.delete(name, { missingOk: true }).catch(() => undefined);
    plumbing.releaseSlot(inst.slot);
    log.info({ router }, "SNAT instance removed from this compute");
  }
}

const keyOf = (h: HostedSnat): string => JSON.stringify([h.left, h.right, h.internal]);
