// The Linux stand-in for what a vRouter does in its compute (spec §3 table, Appendix A "Data plane"). Each
// virtual network gets its own VRF, as in TF, so VNs with the same subnet live side by side without leaking:
//   - in the compute: a bridge (L2 only) joining the VN's taps, a VXLAN device to the VN's other computes
//     (VNI = the VN's VNI, one flood entry per remote VTEP), and two legs into the VRF;
//   - the VRF: a private network namespace (gone with the agent) holding the subnets' gateways on `gw` with
//     TF's gateway MAC, and an uplink `up` to the compute for what leaves the VN: floating IPs (1:1 NAT in
//     the VRF, the compute routing the FIP in and answering ARP/ND for it on the fabric), the addresses of
//     a public (router_external) VN (routed the same way, no NAT) and fabric SNAT (masquerade in the VRF,
//     then to the compute's fabric address);
//   - logical-router SNAT: the VRF sends what leaves the VN to the router's SNAT instance (svc-monitor's,
//     scheduled on one compute) through a leg `sn` of its own on the VN's bridge, so across the tunnels;
//     floating IPs keep their own way out (a source rule to the uplink's table). On the compute hosting
//     it (snatns.ts), the instance is a namespace with a left leg on each internal VN's bridge and its
//     right address, an address of the external VN, routed in like a floating IP.
// Each compute's gateway answers its own workloads only: its frames never cross the VXLAN tunnels.
// Everything here is made through src/dataplane.
import type { Logger } from "pino";
import {
  isErrno,
  replaceNftTable,
  deleteNftTable,
  writeSysctl,
  type Dataplane,
  type NetnsHandle,
} from "../../dataplane/index.js";
import { addrOf, type ResolvedPort } from "./resolve.js";
import type { SnatPort } from "./snat.js";

/** The MAC the agent answers with for subnet gateways and DNS (`Agent::vrrp_mac_`). */
export const gatewayMac = "00:00:5e:00:01:00";
const natTable = "tfemu";
const l2Table = "tfemu_l2";
const zeroMac = "00:00:00:00:00:00";

export const bridgeName = (vni: number): string => `tfbr${vni}`;
export const vxlanName = (vni: number): string => `tfvx${vni}`;
/** The compute ends of a VRF's gateway leg (on the bridge), of its uplink and of its leg to SNAT. */
export const gatewayLegName = (vni: number): string => `tfg${vni}`;
export const uplinkName = (vni: number): string => `tfu${vni}`;
export const snatLegName = (vni: number): string => `tfn${vni}`;
/** The VRF table holding the uplink default route for floating IPs when the VN's default goes to SNAT. */
const fipTable = 100;

/**
 * A VRF's uplink addresses by slot: /30s from 169.254.128.0/17 and /64s from 2001:db8:ffff::/48 (8192
 * slots per compute). VN subnets must not use these ranges.
 */
export function uplinkAddrs(slot: number): { host4: string; vrf4: string; host6: string; vrf6: string } {
  const base = `169.254.${128 + (slot >> 6)}.`;
  const last = (slot & 63) * 4;
  const net6 = `2001:db8:ffff:${slot.toString(16)}::`;
  return { host4: `${base}${last + 1}`, vrf4: `${base}${last + 2}`, host6: `${net6}1`, vrf6: `${net6}2` };
}
const uplinkSlots = 8192;
const uplinkRange4 = "169.254.128.0/17";

interface Vrf {
  ns: NetnsHandle;
  slot: number;
  gateways: Set<string>;
  peers: Set<string>;
  /** The VRF's NAT table text as last written. */
  natText: string;
  /** Families the VRF has a default route of (only when something leaves the VN that way). */
  defaults: Set<4 | 6>;
  /** The SNAT instance's left port the IPv4 default route goes to, as "ip mac" (instead of the uplink). */
  steer: string;
  /** Floating-IP sources sent out the uplink by rule while the default goes to SNAT. */
  fipRules: Set<string>;
}

export interface PlumbingOptions {
  dp: Dataplane;
  /** The compute's namespace. */
  ns: NetnsHandle;
  /** This compute's fabric address (vhost0): source of the VXLAN tunnels, target of SNAT. */
  vtepIp: string;
  vxlanPort?: number;
  log: Logger;
}

/** An address the compute routes into one of its namespaces (and answers ARP/ND for on the fabric). */
export interface RoutedIn {
  dev: string;
  via: string;
}

const ignoreExists = (err: unknown): void => {
  if (!isErrno(err, "EEXIST")) throw err;
};

export class ComputePlumbing {
  private readonly vrfs = new Map<number, Vrf>();
  /** Uplink slots in use (VRFs and SNAT instances). */
  private readonly slots = new Set<number>();
  /** Floating IP, public or SNAT address → the uplink it is routed into. */
  private routedIn = new Map<string, RoutedIn>();
  private underlay: { name: string; mtu: number } | undefined;

  constructor(private readonly opts: PlumbingOptions) {}

  /** Routing to and from the VRFs, ARP/ND answers for floating IPs, the gateways kept off the tunnels. */
  async init(): Promise<void> {
    const { ns } = this.opts;
    writeSysctl(ns, "net/ipv4/ip_forward", "1");
    writeSysctl(ns, "net/ipv6/conf/all/forwarding", "1");
    writeSysctl(ns, "net/ipv6/conf/all/proxy_ndp", "1");
    const ul = await this.underlayLink();
    replaceNftTable(
      ns,
      "ip",
      natTable,
      [
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        `    ip saddr ${uplinkRange4} oifname "${ul.name}" masquerade`,
        "  }",
      ].join("\n"),
    );
    replaceNftTable(
      ns,
      "bridge",
      l2Table,
      [
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        `    iifname "tfvx*" ether saddr ${gatewayMac} drop`,
        `    oifname "tfvx*" ether saddr ${gatewayMac} drop`,
        "  }",
      ].join("\n"),
    );
  }

  get activeVnis(): number[] {
    return [...this.vrfs.keys()];
  }

  /** Makes the VN's bridge, VRF, gateway addresses ("ip/plen"), VXLAN and flood list exist as given. */
  async ensureVn(vni: number, gateways: string[], peers: string[]): Promise<void> {
    const v = this.vrfs.get(vni) ?? (await this.createVrf(vni));
    const want = new Set(gateways);
    for (const gw of want) {
      if (v.gateways.has(gw)) continue;
      await v.ns.addr.add("gw", gw).catch(ignoreExists);
      v.gateways.add(gw);
    }
    // A subnet that went (or a port that moved) leaves no gateway behind.
    for (const gw of [...v.gateways]) {
      if (want.has(gw)) continue;
      await v.ns.addr.del("gw", gw).catch(() => undefined);
      v.gateways.delete(gw);
    }
    await this.syncPeers(vni, v, peers);
  }

  /** Enslaves a workload's host interface to its VN's bridge once it exists; true if attached. */
  async attach(hostIf: string, vni: number): Promise<boolean> {
    const { ns } = this.opts;
    const link = await ns.link.find(hostIf);
    if (!link) return false;
    const br = await ns.link.find(bridgeName(vni));
    if (!br) return false;
    if (link.masterIndex !== br.index || !link.up) await ns.link.set(hostIf, { master: br.index, up: true });
    return true;
  }

  async removeVn(vni: number): Promise<void> {
    const { ns } = this.opts;
    const v = this.vrfs.get(vni);
    this.vrfs.delete(vni);
    if (v) this.slots.delete(v.slot);
    // Closing the VRF's namespace takes both legs with it, and the floating-IP routes through its uplink.
    v?.ns.close();
    const ul = await this.underlayLink();
    for (const [fip, r] of this.routedIn) {
      if (r.dev !== uplinkName(vni)) continue;
      await ns.neigh.proxyDel({ dev: ul.name, ip: fip }, { missingOk: true }).catch(() => undefined);
      this.routedIn.delete(fip);
    }
    for (const name of [
      gatewayLegName(vni),
      uplinkName(vni),
      snatLegName(vni),
      vxlanName(vni),
      bridgeName(vni),
    ])
      await ns.link.delete(name, { missingOk: true });
    this.opts.log.info({ vni }, "virtual network removed from this compute");
  }

  /**
   * Floating IPs (1:1 NAT in the VN's VRF, routed in by the compute), fabric SNAT, the way to the logical
   * router's SNAT instance, and addresses routed in for others (the SNAT instances this compute hosts).
   */
  async syncNat(ports: ResolvedPort[], alsoRoutedIn = new Map<string, RoutedIn>()): Promise<void> {
    const wantRouted = new Map(alsoRoutedIn);
    for (const [vni, v] of this.vrfs) {
      const mine = ports.filter((p) => p.vni === vni);
      const pre: string[] = [];
      const post: string[] = [];
      const defaults = new Set<4 | 6>();
      const fipSources = new Set<string>();
      const up = uplinkAddrs(v.slot);
      for (const p of mine) {
        for (const fip of p.floatingIps) {
          const family = fip.includes(":") ? 6 : 4;
          const a = addrOf(p, family);
          if (!a) continue;
          const k = family === 4 ? "ip" : "ip6";
          pre.push(`    ${k} daddr ${fip} dnat ${k} to ${a.ip}`);
          post.push(`    ${k} saddr ${a.ip} oifname "up" snat ${k} to ${fip}`);
          wantRouted.set(fip, { dev: uplinkName(vni), via: family === 4 ? up.vrf4 : up.vrf6 });
          defaults.add(family);
          if (family === 4) fipSources.add(a.ip);
        }
      }
      // A public network's addresses are routed as they are, in both families.
      for (const a of mine.filter((p) => p.routed).flatMap((p) => p.addrs)) {
        wantRouted.set(a.ip, { dev: uplinkName(vni), via: a.family === 4 ? up.vrf4 : up.vrf6 });
        defaults.add(a.family);
      }
      // Fabric SNAT (IPv4 only in TF): masquerade here, then to the compute's fabric address.
      const fabric = new Set(mine.filter((p) => p.fabricSnat).flatMap((p) => addrOf(p, 4)?.subnet ?? []));
      for (const s of fabric) post.push(`    ip saddr ${s} oifname "up" masquerade`);
      if (fabric.size > 0) defaults.add(4);
      const steer = mine.find((p) => p.snatVia)?.snatVia;
      await this.syncSteering(vni, v, steer, steer ? fipSources : new Set());
      if (steer) defaults.delete(4);
      await this.syncDefaults(v, defaults);
      const text =
        pre.length + post.length === 0
          ? ""
          : [
              "  chain prerouting {",
              "    type nat hook prerouting priority dstnat; policy accept;",
              ...pre,
              "  }",
              "  chain postrouting {",
              "    type nat hook postrouting priority srcnat; policy accept;",
              ...post,
              "  }",
            ].join("\n");
      if (text !== v.natText) {
        if (text) replaceNftTable(v.ns, "inet", natTable, text);
        else if (v.natText) deleteNftTable(v.ns, "inet", natTable);
        v.natText = text;
      }
    }
    await this.syncRoutedIn(wantRouted);
  }

  /**
   * The VRF's IPv4 default to the SNAT instance's left port, through the VRF's own leg on the VN's bridge
   * (a MAC of its own, unlike the gateway's, so it may cross the tunnels), with the port's MAC pinned so the
   * VRF never ARPs from a gateway address. Floating-IP sources keep the uplink, by rule.
   */
  private async syncSteering(
    vni: number,
    v: Vrf,
    to: SnatPort | undefined,
    fipSources: Set<string>,
  ): Promise<void> {
    const key = to ? `${to.ip} ${to.mac}` : "";
    if (key !== v.steer) {
      if (v.steer) {
        await v.ns.route.del({ dst: "0.0.0.0/0", dev: "sn" }, { missingOk: true });
        await v.ns.neigh.del({ dev: "sn", ip: v.steer.split(" ")[0]! }, { missingOk: true });
      }
      if (to) {
        if (!(await v.ns.link.find("sn"))) {
          await this.opts.ns.link.createVeth({
            name: snatLegName(vni),
            up: true,
            master: bridgeName(vni),
            peer: { name: "sn", netns: v.ns, up: true },
          });
          await v.ns.route.replace({
            dst: "0.0.0.0/0",
            gateway: uplinkAddrs(v.slot).host4,
            dev: "up",
            table: fipTable,
          });
        }
        await v.ns.neigh.replace({ dev: "sn", ip: to.ip, mac: to.mac });
        await v.ns.route.replace({ dst: "0.0.0.0/0", gateway: to.ip, dev: "sn", onlink: true });
        v.defaults.delete(4);
      }
      v.steer = key;
    }
    for (const ip of fipSources) {
      if (v.fipRules.has(ip)) continue;
      await v.ns.rule.ensure({ from: `${ip}/32`, table: fipTable, priority: 100 });
      v.fipRules.add(ip);
    }
    for (const ip of [...v.fipRules]) {
      if (fipSources.has(ip)) continue;
      await v.ns.rule.del({ from: `${ip}/32`, table: fipTable, priority: 100 }, { missingOk: true });
      v.fipRules.delete(ip);
    }
  }

  /** Removes everything this compute's emulator made. */
  async cleanup(): Promise<void> {
    for (const vni of [...this.vrfs.keys()]) await this.removeVn(vni).catch(() => undefined);
    await this.syncRoutedIn(new Map()).catch(() => undefined);
    for (const [family, name] of [
      ["ip", natTable],
      ["bridge", l2Table],
    ] as const) {
      try {
        deleteNftTable(this.opts.ns, family, name);
      } catch {
        // gone already
      }
    }
  }

  private async createVrf(vni: number): Promise<Vrf> {
    const { ns, dp } = this.opts;
    const ul = await this.underlayLink();
    const mtu = ul.mtu - 50;
    const br = bridgeName(vni);
    if (!(await ns.link.find(br))) await ns.link.createBridge({ name: br, up: true, mtu });
    const vx = vxlanName(vni);
    if (!(await ns.link.find(vx))) {
      await ns.link.createVxlan({
        name: vx,
        vni,
        local: this.opts.vtepIp,
        port: this.opts.vxlanPort ?? 4789,
        learning: true,
        mtu,
        master: br,
        up: true,
      });
    }
    const slot = this.takeSlot();
    const up = uplinkAddrs(slot);
    // Legs left by an agent that died (its VRFs went with it) would block the names.
    for (const name of [gatewayLegName(vni), uplinkName(vni)])
      await ns.link.delete(name, { missingOk: true });
    const vrf = dp.newNetns();
    try {
      writeSysctl(vrf, "net/ipv4/ip_forward", "1");
      writeSysctl(vrf, "net/ipv6/conf/all/forwarding", "1");
      await ns.link.createVeth({
        name: gatewayLegName(vni),
        mtu,
        up: true,
        master: br,
        peer: { name: "gw", netns: vrf, mac: gatewayMac, up: true },
      });
      await ns.link.createVeth({
        name: uplinkName(vni),
        up: true,
        peer: { name: "up", netns: vrf, up: true },
      });
      await ns.addr.add(uplinkName(vni), `${up.host4}/30`);
      await ns.addr.add(uplinkName(vni), `${up.host6}/64`);
      await vrf.addr.add("up", `${up.vrf4}/30`);
      await vrf.addr.add("up", `${up.vrf6}/64`);
    } catch (err) {
      vrf.close();
      this.slots.delete(slot);
      throw err;
    }
    const v: Vrf = {
      ns: vrf,
      slot,
      gateways: new Set(),
      peers: new Set(await ns.neigh.fdbDsts(vx)),
      natText: "",
      defaults: new Set(),
      steer: "",
      fipRules: new Set(),
    };
    this.vrfs.set(vni, v);
    this.opts.log.info({ vni, bridge: br, uplink: up.host4 }, "virtual network plumbed (own VRF)");
    return v;
  }

  private async syncPeers(vni: number, v: Vrf, peers: string[]): Promise<void> {
    const { ns } = this.opts;
    const vx = vxlanName(vni);
    const want = new Set(peers.filter((p) => p !== this.opts.vtepIp));
    for (const p of want) {
      if (v.peers.has(p)) continue;
      await ns.neigh.fdbAppend({ dev: vx, mac: zeroMac, dst: p }).catch(ignoreExists);
      v.peers.add(p);
    }
    for (const p of [...v.peers]) {
      if (want.has(p)) continue;
      await ns.neigh.fdbDel({ dev: vx, mac: zeroMac, dst: p }, { missingOk: true });
      v.peers.delete(p);
    }
  }

  /** A VRF routes out only what may leave the VN (SNAT, floating IPs): the rest has no way out, as in TF. */
  private async syncDefaults(v: Vrf, want: Set<4 | 6>): Promise<void> {
    const up = uplinkAddrs(v.slot);
    for (const family of [4, 6] as const) {
      const dst = family === 4 ? "0.0.0.0/0" : "::/0";
      const gateway = family === 4 ? up.host4 : up.host6;
      if (want.has(family) && !v.defaults.has(family)) {
        await v.ns.route.replace({ dst, gateway, dev: "up" });
        v.defaults.add(family);
      } else if (!want.has(family) && v.defaults.has(family)) {
        await v.ns.route.del({ dst, gateway, dev: "up" }, { missingOk: true });
        v.defaults.delete(family);
      }
    }
  }

  private async syncRoutedIn(want: Map<string, RoutedIn>): Promise<void> {
    const { ns } = this.opts;
    const ul = await this.underlayLink();
    for (const [fip, r] of want) {
      const had = this.routedIn.get(fip);
      if (had?.dev === r.dev && had.via === r.via) continue;
      const dst = `${fip}/${fip.includes(":") ? 128 : 32}`;
      await ns.route.replace({ dst, gateway: r.via, dev: r.dev });
      await ns.neigh.proxyAdd({ dev: ul.name, ip: fip });
    }
    for (const fip of this.routedIn.keys()) {
      if (want.has(fip)) continue;
      const dst = `${fip}/${fip.includes(":") ? 128 : 32}`;
      await ns.route.del({ dst }, { missingOk: true }).catch(() => undefined);
      await ns.neigh.proxyDel({ dev: ul.name, ip: fip }, { missingOk: true }).catch(() => undefined);
    }
    this.routedIn = new Map(want);
  }

  /** A free uplink slot (addresses of a /30 and a /64), until given back with releaseSlot. */
  takeSlot(): number {
    let slot = 0;
    while (this.slots.has(slot)) slot++;
    if (slot >= uplinkSlots)
      throw new Error(`more than ${uplinkSlots} VRFs and SNAT instances on this compute`);
    this.slots.add(slot);
    return slot;
  }

  releaseSlot(slot: number): void {
    this.slots.delete(slot);
  }

  async underlayLink(): Promise<{ name: string; mtu: number }> {
    if (this.underlay) return this.underlay;
    const { ns, vtepIp } = this.opts;
    const addr = (await ns.addr.list()).find((a) => a.address === vtepIp);
    if (!addr) throw new Error(`no interface in this namespace holds the fabric address ${vtepIp}`);
    const link = await ns.link.get(addr.index);
    this.underlay = { name: link.name, mtu: link.mtu };
    return this.underlay;
  }
}
