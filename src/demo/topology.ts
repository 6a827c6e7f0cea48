// The demo's network: two clouds, an "internet" and a WAN, all in network namespaces named with the run's
// prefix. Namespace files are made with `ip netns add` (they are bind mounts that iproute2 manages, so that
// `ip netns exec` and every operator tool see them); every link, address, route and sysctl goes through
// src/dataplane.
//
//   internet (203.0.113.10, 2001:db8:203::10) ── gw-a ══ WAN 198.19.0.0/30 ══ gw-b
//                              │ fabric A 198.18.0.0/24      │ fabric B 198.18.1.0/24
//                          node a1 (.11), a2 (.12)       node b1 (.11)
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { Dataplane, NETNS_RUN_DIR, writeSysctl, type NetnsHandle } from "../dataplane/index.js";

export const fabricMtu = 9000;

export interface DemoNode {
  name: string;
  cloud: "a" | "b";
  ns: string;
  ip: string;
  gw: string;
}

export interface Topology {
  prefix: string;
  gwA: string;
  gwB: string;
  inet: string;
  nodes: DemoNode[];
  /** Pod namespaces by role. */
  pods: Record<string, string>;
  namespaces: string[];
}

export const internetIp = "203.0.113.10";
/** The internet's IPv6 address, and the public VN's IPv6 subnet (routed on fabric A, no NAT). */
export const internetIp6 = "2001:db8:203::10";
export const publicSubnet6 = "2001:db8:100::/64";
export const gwAIp = "198.18.0.1";
export const gwBIp = "198.18.1.1";

/** Namespace names of a run, in creation order (deletion is the reverse). */
export function plan(prefix: string): Topology {
  const ns = (n: string): string => `${prefix}-${n}`;
  const nodes: DemoNode[] = [
    { name: "a1", cloud: "a", ns: ns("a1"), ip: "198.18.0.11", gw: gwAIp },
    { name: "a2", cloud: "a", ns: ns("a2"), ip: "198.18.0.12", gw: gwAIp },
    { name: "b1", cloud: "b", ns: ns("b1"), ip: "198.18.1.11", gw: gwBIp },
  ];
  const pods = {
    "pod-a1": ns("pod-a1"),
    "pod-a2": ns("pod-a2"),
    "web-a1": ns("web-a1"),
    "pod-b1": ns("pod-b1"),
    "icmp-a2": ns("icmp-a2"),
  };
  const gwA = ns("gw-a");
  const gwB = ns("gw-b");
  const inet = ns("inet");
  return {
    prefix,
    gwA,
    gwB,
    inet,
    nodes,
    pods,
    namespaces: [gwA, gwB, inet, ...nodes.map((n) => n.ns), ...Object.values(pods)],
  };
}

export const netnsPath = (name: string): string => `${NETNS_RUN_DIR}/${name}`;

/** A cloud's fabric IPv6 prefix (documentation range); hosts append their fabric IPv4 host number. */
const fabric6 = (cloud: "a" | "b"): string => (cloud === "a" ? "2001:db8:ff00::" : "2001:db8:ff01::");

function netnsAdd(name: string): void {
  execFileSync("ip", ["netns", "add", name], { stdio: ["ignore", "ignore", "pipe"] });
}

export function netnsDel(name: string): void {
  if (!existsSync(netnsPath(name))) return;
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: ["ignore", "ignore", "pipe"] });
  } catch {
    // already going
  }
}

/** Builds the whole network. On failure the caller removes `t.namespaces`. */
export async function build(t: Topology): Promise<void> {
  for (const n of t.namespaces) netnsAdd(n);
  const dp = new Dataplane();
  try {
    const h: Record<string, NetnsHandle> = Object.fromEntries(
      t.namespaces.map((n) => [n, dp.netns(netnsPath(n))]),
    );
    for (const n of t.namespaces) await h[n]!.link.set("lo", { up: true });
    const p = t.prefix;
    const gwA = h[t.gwA]!;
    const gwB = h[t.gwB]!;
    // Fabrics: a bridge in each cloud's gateway, a veth to each node.
    await gwA.link.createBridge({ name: `${p}fa`, up: true, mtu: fabricMtu });
    await gwA.addr.add(`${p}fa`, `${gwAIp}/24`);
    await gwA.addr.add(`${p}fa`, `${fabric6("a")}1/64`);
    await gwB.link.createBridge({ name: `${p}fb`, up: true, mtu: fabricMtu });
    await gwB.addr.add(`${p}fb`, `${gwBIp}/24`);
    await gwB.addr.add(`${p}fb`, `${fabric6("b")}1/64`);
    for (const n of t.nodes) {
      const gw = n.cloud === "a" ? gwA : gwB;
      const node = h[n.ns]!;
      await gw.link.createVeth({
        name: `${p}${n.name}g`,
        up: true,
        mtu: fabricMtu,
        master: n.cloud === "a" ? `${p}fa` : `${p}fb`,
        peer: { name: `${p}${n.name}u`, netns: node, up: true, mtu: fabricMtu },
      });
      await node.addr.add(`${p}${n.name}u`, `${n.ip}/24`);
      await node.route.add({ dst: "0.0.0.0/0", gateway: n.gw });
      // IPv6 on the fabric too: a compute forwards its public VN's IPv6 traffic (IPv4 keeps the tunnels).
      await node.addr.add(`${p}${n.name}u`, `${fabric6(n.cloud)}${n.ip.split(".")[3]}/64`);
      await node.route.add({ dst: "::/0", gateway: `${fabric6(n.cloud)}1` });
    }
    // The WAN between the clouds' gateways, and the internet behind cloud A's.
    await gwA.link.createVeth({
      name: `${p}wa`,
      up: true,
      mtu: fabricMtu,
      peer: { name: `${p}wb`, netns: gwB, up: true, mtu: fabricMtu },
    });
    await gwA.addr.add(`${p}wa`, "198.19.0.1/30");
    await gwB.addr.add(`${p}wb`, "198.19.0.2/30");
    await gwA.route.add({ dst: "198.18.1.0/24", gateway: "198.19.0.2" });
    await gwB.route.add({ dst: "198.18.0.0/24", gateway: "198.19.0.1" });
    await gwB.route.add({ dst: "0.0.0.0/0", gateway: "198.19.0.1" });
    const inet = h[t.inet]!;
    await gwA.link.createVeth({ name: `${p}ia`, up: true, peer: { name: `${p}ib`, netns: inet, up: true } });
    await gwA.addr.add(`${p}ia`, "203.0.113.1/24");
    await inet.addr.add(`${p}ib`, `${internetIp}/24`);
    await inet.route.add({ dst: "0.0.0.0/0", gateway: "203.0.113.1" });
    await gwA.addr.add(`${p}ia`, "2001:db8:203::1/64");
    await inet.addr.add(`${p}ib`, `${internetIp6}/64`);
    await inet.route.add({ dst: "::/0", gateway: "2001:db8:203::1" });
    // Floating IPs and the public VN's addresses are answered for on fabric A by the compute that holds them.
    await gwA.route.add({ dst: "198.51.100.0/24", dev: `${p}fa` });
    await gwA.route.add({ dst: publicSubnet6, dev: `${p}fa` });
    for (const gw of [gwA, gwB]) {
      writeSysctl(gw, "net/ipv4/ip_forward", "1");
      writeSysctl(gw, "net/ipv6/conf/all/forwarding", "1");
    }
  } finally {
    dp.close();
  }
}
