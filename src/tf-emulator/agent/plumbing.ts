// The Linux stand-in for what a vRouter does in its compute (spec §3 table, Appendix A "Data plane"): per
// virtual network a bridge holding the subnet gateway with TF's gateway MAC, joined to the other computes of
// the VN by a VXLAN device (VNI = the VN's VNI) with one flood entry per remote VTEP; workload taps enslaved
// to the bridge; floating IPs as 1:1 NAT and logical-router SNAT as masquerade towards the fabric, in one
// nftables table. Everything here is made through src/dataplane.
import type { Logger } from "pino";
import {
  isErrno,
  replaceNftTable,
  deleteNftTable,
  writeSysctl,
  type NetnsHandle,
} from "../../dataplane/index.js";
import type { ResolvedPort } from "./resolve.js";

/** The MAC the agent answers with for subnet gateways and DNS (`Agent::vrrp_mac_`). */
export const gatewayMac = "00:00:5e:00:01:00";
const nftTable = "tfemu";
const zeroMac = "00:00:00:00:00:00";

export const bridgeName = (vni: number): string => `tfbr${vni}`;
export const vxlanName = (vni: number): string => `tfvx${vni}`;

interface VnState {
  gateways: Set<string>;
  peers: Set<string>;
}

export interface PlumbingOptions {
  ns: NetnsHandle;
  /** This compute's fabric address (vhost0): source of the VXLAN tunnels, target of SNAT. */
  vtepIp: string;
  vxlanPort?: number;
  log: Logger;
}

export class ComputePlumbing {
  private readonly vns = new Map<number, VnState>();
  private fips = new Set<string>();
  private natText = "";
  private underlay: { name: string; mtu: number } | undefined;

  constructor(private readonly opts: PlumbingOptions) {}

  /** Routing between VNs and the fabric happens in the compute, as in a vRouter. */
  init(): void {
    writeSysctl(this.opts.ns, "net/ipv4/ip_forward", "1");
  }

  get activeVnis(): number[] {
    return [...this.vns.keys()];
  }

  /** Makes the VN's bridge, gateway addresses, VXLAN and flood list exist as given. */
  async ensureVn(vni: number, gateways: string[], peers: string[]): Promise<void> {
    const { ns } = this.opts;
    const br = bridgeName(vni);
    const vx = vxlanName(vni);
    let st = this.vns.get(vni);
    if (!st) {
      const ul = await this.underlayLink();
      if (!(await ns.link.find(br))) {
        await ns.link.createBridge({ name: br, mac: gatewayMac, up: true, mtu: ul.mtu - 50 });
      }
      if (!(await ns.link.find(vx))) {
        await ns.link.createVxlan({
          name: vx,
          vni,
          local: this.opts.vtepIp,
          port: this.opts.vxlanPort ?? 4789,
          learning: true,
          mtu: ul.mtu - 50,
          master: br,
          up: true,
        });
      }
      st = { gateways: new Set(), peers: new Set(await ns.neigh.fdbDsts(vx)) };
      this.vns.set(vni, st);
      this.opts.log.info({ vni, bridge: br }, "virtual network plumbed");
    }
    for (const gw of gateways) {
      if (st.gateways.has(gw)) continue;
      await ns.addr.add(br, gw).catch((err: unknown) => {
        if (!isErrno(err, "EEXIST")) throw err;
      });
      st.gateways.add(gw);
    }
    const want = new Set(peers.filter((p) => p !== this.opts.vtepIp));
    for (const p of want) {
      if (st.peers.has(p)) continue;
      await ns.neigh.fdbAppend({ dev: vx, mac: zeroMac, dst: p }).catch((err: unknown) => {
        if (!isErrno(err, "EEXIST")) throw err;
      });
      st.peers.add(p);
    }
    for (const p of [...st.peers]) {
      if (want.has(p)) continue;
      await ns.neigh.fdbDel({ dev: vx, mac: zeroMac, dst: p }, { missingOk: true });
      st.peers.delete(p);
    }
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
    await ns.link.delete(vxlanName(vni), { missingOk: true });
    await ns.link.delete(bridgeName(vni), { missingOk: true });
    this.vns.delete(vni);
    this.opts.log.info({ vni }, "virtual network removed from this compute");
  }

  /** Floating IPs (1:1 NAT, the FIP held on the fabric interface) and SNAT of VNs with external access. */
  async syncNat(ports: ResolvedPort[]): Promise<void> {
    const { ns } = this.opts;
    const ul = await this.underlayLink();
    const wantFips = new Map<string, string>();
    for (const p of ports) for (const f of p.floatingIps) wantFips.set(f, p.ip);
    const snatSubnets = [...new Set(ports.filter((p) => p.snat).map((p) => p.subnet))];
    const pre = [...wantFips].map(([f, ip]) => `    ip daddr ${f} dnat to ${ip}`);
    const post = [
      ...[...wantFips].map(([f, ip]) => `    ip saddr ${ip} oifname "${ul.name}" snat to ${f}`),
      ...snatSubnets.map((s) => `    ip saddr ${s} oifname "${ul.name}" masquerade`),
    ];
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
    if (text !== this.natText) {
      if (text) replaceNftTable(ns, "ip", nftTable, text);
      else if (this.natText) deleteNftTable(ns, "ip", nftTable);
      this.natText = text;
    }
    for (const f of wantFips.keys()) {
      if (this.fips.has(f)) continue;
      await ns.addr.add(ul.name, `${f}/32`).catch((err: unknown) => {
        if (!isErrno(err, "EEXIST")) throw err;
      });
    }
    for (const f of this.fips) {
      if (!wantFips.has(f)) await ns.addr.del(ul.name, `${f}/32`).catch(() => undefined);
    }
    this.fips = new Set(wantFips.keys());
  }

  /** Removes everything this compute's emulator made. */
  async cleanup(): Promise<void> {
    for (const vni of [...this.vns.keys()]) await this.removeVn(vni).catch(() => undefined);
    await this.syncNat([]).catch(() => undefined);
  }

  private async underlayLink(): Promise<{ name: string; mtu: number }> {
    if (this.underlay) return this.underlay;
    const { ns, vtepIp } = this.opts;
    const addr = (await ns.addr.list()).find((a) => a.address === vtepIp);
    if (!addr) throw new Error(`no interface in this namespace holds the fabric address ${vtepIp}`);
    const link = await ns.link.get(addr.index);
    this.underlay = { name: link.name, mtu: link.mtu };
    return this.underlay;
  }
}
