// TF forwarder end to end (issue 5): an emulated TF cluster (config API, two computes with vRouter agent
// emulators of both generations) in namespaces; pods request service `external` and land on TF VN
// default-domain:k8s-default:external; traffic to the VN gateway, to a pod on the other compute, to the
// "internet" through SNAT and from it through a floating IP; faults; and nothing left behind.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { tfKeys } from "../../src/forwarder/tf/keys.js";
import { tapName } from "../../src/forwarder/tf/tf.js";
import { inNs, ip, links, ping } from "../helpers/netns.js";
import { eventually, sleep, startComponent } from "../helpers/proc.js";
import { TfCluster, internetIp, type TfNode } from "../helpers/tfcluster.js";
import { snatNames } from "../../src/tf-emulator/vnc/svcmonitor.js";
import { tfForwarderRestart } from "../helpers/healscenarios.js";

const tcpScript = new URL("../helpers/tcp.mjs", import.meta.url).pathname;
const cluster = new TfCluster({
  nodes: [{ generation: "r2011" }, { generation: "r2005" }],
  services: "external,external-fip,nowhere,tiny,dual,twin-a,twin-b",
  nseArgs: [
    "--vn",
    "external-fip=default-domain:k8s-default:external",
    "--vn",
    "nowhere=default-domain:k8s-default:does-not-exist",
    "--fip-pool",
    "external-fip=default-domain:k8s-default:public:pool",
  ],
});
let n1: TfNode, n2: TfNode;
const pods: string[] = [];
const host = (cidr: string) => cidr.split("/")[0]!;

function client(name: string, pod: string, node: TfNode): NsmClient {
  return new NsmClient({
    name,
    nsmgrUrl: node.nsmgrSock,
    netnsPath: cluster.net.path(pod),
    labels: { nodeName: node.name },
    security: createSecurity({ name, insecure: true }),
  });
}

/** Sends `bytes` over TCP; returns what the server received and the source address it saw. */
async function tcpSeen(
  serverNs: string,
  bindIp: string,
  clientNs: string,
  dialIp: string,
  bytes: number,
): Promise<{ bytes: number; peer: string }> {
  const srv = spawn(
    "ip",
    ["netns", "exec", serverNs, process.execPath, tcpScript, "server", bindIp, "5201"],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  srv.stdout.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    srv.stdout.once("data", () => resolve());
    srv.once("exit", (c) => reject(new Error(`tcp server exited ${c}`)));
  });
  try {
    const r = inNs(clientNs, [process.execPath, tcpScript, "client", dialIp, "5201", String(bytes)], 15_000);
    assert.equal(r.code, 0, r.out);
    // The server's line about the connection may still be in the pipe.
    await eventually(() => /peer \S+\n/.test(out), 5_000, "the server's peer line").catch(() => undefined);
    return { bytes: Number(r.out.trim()), peer: /peer (?:::ffff:)?(\S+)/.exec(out)?.[1] ?? "" };
  } finally {
    srv.kill();
  }
}

async function tcp(...args: Parameters<typeof tcpSeen>): Promise<number> {
  return (await tcpSeen(...args)).bytes;
}

/** The address of the logical router's SNAT instance in the external VN (svc-monitor's right port). */
async function snatSource(): Promise<string> {
  const lr = await cluster.vnc.readByFqName("logical-router", ["default-domain", "k8s-default", "lr"]);
  const iip = await cluster.vnc.readByFqName(
    "instance-ip",
    snatNames(lr.fq_name.slice(0, -1), lr.uuid).iip("right"),
  );
  return String(iip["instance_ip_address"]);
}

/** VNC objects the NSE made (VMs named nsm__…), agent subscriptions, port files and taps: all must be gone. */
async function assertNothingLeft(): Promise<void> {
  await eventually(
    async () => (await cluster.vnc.list("virtual-machine")).every((v) => !v.fq_name[0]!.startsWith("nsm__")),
    10_000,
    "no NSM virtual-machines in TF",
  );
  for (const type of ["virtual-machine-interface", "instance-ip", "floating-ip"]) {
    const left = (await cluster.vnc.list(type)).filter((o) => o.fq_name.some((x) => x.startsWith("nsm__")));
    assert.deepEqual(left, [], `${type} left in TF`);
  }
  // The logical router stays, and so does its SNAT instance on the compute it was scheduled on: its
  // namespace's legs, the external VN's plumbing there and its address routed in.
  const source = await snatSource();
  const ext = await cluster.vnc.readByFqName("virtual-network", [
    "default-domain",
    "k8s-default",
    "external",
  ]);
  const extVni = Number(ext["virtual_network_network_id"]);
  const snatLinks = new RegExp(`^(tf(br|vx|g|u|n|l)${extVni}|tfs\\d+)$`);
  const escaped = source.replace(/\./g, "\\.");
  const floating = (text: string): boolean =>
    text.split("\n").some((l) => /198\.51\.100\./.test(l) && !new RegExp(`\\b${escaped}\\b`).test(l));
  for (const n of [n1, n2]) {
    await eventually(() => !links(n.ns).some((l) => l.startsWith("tap")), 10_000, `no tap on ${n.name}`);
    // The emulated vRouter let go too: no VN bridge, VXLAN or VRF legs, no floating-IP route or ARP answer.
    await eventually(
      () => !links(n.ns).some((l) => /^tf(br|vx|g|u|n|l|s)\d/.test(l) && !snatLinks.test(l)),
      10_000,
      `no VN plumbing on ${n.name}`,
    );
    await eventually(
      () =>
        !floating(ip(["-n", n.ns, "-o", "addr", "show"])) &&
        !floating(ip(["-n", n.ns, "route", "show"])) &&
        !floating(ip(["-n", n.ns, "neigh", "show", "proxy"])),
      10_000,
      `no floating IP left on ${n.name}`,
    );
    const vmDir = join(n.portsRoot, "vm");
    const files = existsSync(vmDir) ? readdirSync(vmDir) : [];
    assert.deepEqual(files, [], `port files left on ${n.name}`);
  }
}

describe("TF forwarder e2e", { timeout: 240_000 }, () => {
  before(async () => {
    await cluster.start();
    [n1, n2] = cluster.nodes as [TfNode, TfNode];
    await cluster.provision([
      { name: "tiny", cidr: "100.64.20.0/29" },
      { name: "dual", cidr: ["100.64.30.0/24", "2001:db8:30::/64"] },
      // Two VNs with the same subnet: each has its own VRF on every compute.
      { name: "twin-a", cidr: "100.64.40.0/24" },
      { name: "twin-b", cidr: "100.64.40.0/24" },
    ]);
    for (const p of ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]) pods.push(cluster.net.add(p));
  });
  after(async () => {
    await cluster.stop();
    assert.deepEqual(cluster.net.leftovers(), []);
  });

  it("puts a pod on TF VN external: gateway, a pod on the other compute (r2005 agent), the internet via SNAT", async () => {
    const [p1, p2] = pods as [string, string];
    const c1 = client("nsc-1", p1, n1);
    const c2 = client("nsc-2", p2, n2);
    const p4 = pods[4]!;
    const c4 = client("nsc-4", p4, n1);
    // A pod with an interface and a default route of its own, as a pod on a cluster network has.
    ip(["-n", p4, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    ip(["-n", p4, "addr", "add", "100.64.99.1/24", "dev", "eth0"]);
    ip(["-n", p4, "link", "set", "eth0", "up"]);
    ip(["-n", p4, "link", "set", "eth0p", "up"]);
    ip(["-n", p4, "route", "add", "default", "via", "100.64.99.254", "dev", "eth0"]);
    const seen: string[] = [];
    try {
      const a = await c1.request({ service: "external", ifname: "nsm-ext" });
      const x = a.context!.extraContext;
      assert.equal(x[tfKeys.vnName], "default-domain:k8s-default:external");
      const ipA = host(a.context!.ipContext!.srcIpAddrs[0]!);
      assert.match(a.context!.ipContext!.srcIpAddrs[0]!, /^100\.64\.10\.\d+\/24$/);
      // The pod's interface carries TF's MAC and address; the host end is a tap named from the VMI uuid.
      const shown = ip(["-n", p1, "-o", "addr", "show", "dev", "nsm-ext"]);
      assert.match(shown, new RegExp(`${ipA.replace(/\./g, "\\.")}/24`));
      assert.match(ip(["-n", p1, "link", "show", "nsm-ext"]), new RegExp(a.context!.ethernetContext!.srcMac));
      assert.ok(links(n1.ns).includes(tapName(x[tfKeys.vmiUuid]!)));
      // TF objects as kube-manager makes them, with the VR → VM ref.
      const vm = await cluster.vnc.read("virtual-machine", x[tfKeys.vmUuid]!);
      assert.deepEqual(
        (vm["virtual_router_back_refs"] as { to: string[] }[]).map((r) => r.to.join(":")),
        ["default-global-system-config:node-1"],
      );
      assert.equal(cluster.agentGet(n1, `/vm/${x[tfKeys.vmUuid]!}`).status, 200);
      assert.ok(
        existsSync(join(n1.portsRoot, "vm", x[tfKeys.vmName]!, x[tfKeys.vmiUuid]!)),
        "r2011: port file by VM name",
      );

      const cfg = JSON.parse(cluster.agentCall(n1, "GET", `/vm-cfg/${x[tfKeys.vmName]!}`).body) as {
        id: string;
        "vm-uuid": string;
        "vlan-id": number;
        annotations: string[];
      }[];
      assert.equal(cfg[0]!.id, x[tfKeys.vmiUuid]);
      assert.equal(cfg[0]!["vm-uuid"], x[tfKeys.vmUuid]);
      assert.ok(cfg[0]!.annotations.includes("{index:0/1}"));
      assert.ok(cfg[0]!.annotations.includes("{interface:nsm-ext}"), "the client's interface name");
      assert.equal(cfg[0]!["vlan-id"], 65535, "no VLAN: 0xffff");
      assert.ok(ping(p1, x[tfKeys.gateway]!, 2), "ping the VN gateway");

      const b = await c2.request({ service: "external", ifname: "nsm-ext" });
      const y = b.context!.extraContext;
      assert.ok(
        existsSync(join(n2.portsRoot, "vm", y[tfKeys.vmUuid]!, y[tfKeys.vmiUuid]!)),
        "r2005: port file by VM uuid",
      );
      const ipB = host(b.context!.ipContext!.srcIpAddrs[0]!);
      assert.ok(ping(p1, ipB, 3), "pod on node-1 → pod on node-2 across the emulated fabric");
      assert.ok(ping(p2, ipA, 2));
      seen.push(x[tfKeys.vmUuid]!, y[tfKeys.vmUuid]!);

      assert.ok(ping(p1, internetIp, 2), "ping the internet through the logical router's SNAT");
      // The outside sees the SNAT instance's address in the external VN, from pods of either compute (the
      // instance runs on one of them).
      const source = await snatSource();
      assert.match(source, /^198\.51\.100\.\d+$/, "the SNAT source is an address of the gateway VN");
      for (const p of [p1, p2]) {
        const seen = await tcpSeen(cluster.inet, internetIp, p, internetIp, 1 << 20);
        assert.deepEqual(seen, { bytes: 1 << 20, peer: source }, `${p} → internet`);
      }

      // A second pod on node-1 in the same VN: reachable on the compute's bridge; closing it leaves the
      // others alone.
      const c = await c4.request({ service: "external", ifname: "nsm-ext" });
      assert.ok(ping(p1, host(c.context!.ipContext!.srcIpAddrs[0]!), 2), "pods on one compute");
      // p4 has a default route of its own: TF's default route comes below it, never replacing it.
      const routes = ip(["-n", p4, "route", "show", "default"]);
      assert.match(routes.split("\n")[0]!, /dev eth0/, routes);
      assert.match(routes, /via 100\.64\.10\.254 dev nsm-ext .*metric 4096/, routes);
      await c4.closeAll();
      assert.match(
        ip(["-n", p4, "route", "show", "default"]),
        /dev eth0/,
        "the pod's own default route stays",
      );
      assert.ok(ping(p1, ipB, 2), "the other connections still carry traffic");
    } finally {
      await c1.closeAll();
      await c2.closeAll();
      await c4.closeAll();
    }
    await assertNothingLeft();
    // The agents let go of the ports too.
    for (const n of [n1, n2]) {
      for (const vm of [...seen]) assert.equal(cluster.agentGet(n, `/vm/${vm}`).status, 404);
    }
  });

  it("serves the agent's port API with TF's quirks", () => {
    const vm = "6f0c2a1e-0000-4000-8000-000000000001";
    const unknown = cluster.agentCall(n1, "GET", `/vm/${vm}`);
    assert.deepEqual(
      [unknown.status, unknown.statusText, JSON.parse(unknown.body)],
      [404, "OK", { error: "{ Not Found }" }],
    );
    assert.equal(unknown.contentType, "application/json; charset=UTF-8");
    const upper = cluster.agentCall(n1, "GET", `/vm/${vm.toUpperCase()}`);
    assert.deepEqual([upper.status, JSON.parse(upper.body)], [404, { error: "Unknown Request" }]);
    assert.deepEqual(
      cluster.agentCall(n1, "DELETE", `/vm/${vm}`).status,
      200,
      "DELETE of an unknown VM is fine",
    );
    // TF's texts (port_ipc_handler.cc): members are checked in order, uuids as data, strings as fields.
    const refusal = (body: string) => {
      const r = cluster.agentCall(n1, "POST", "/vm", body);
      return [r.status, (JSON.parse(r.body) as { error: string }).error];
    };
    assert.deepEqual(refusal("{}"), [500, "{ Invalid or missing data for <vm-uuid> }"]);
    assert.deepEqual(refusal(JSON.stringify({ "vm-uuid": vm })), [
      500,
      "{ Invalid or missing field for <host-ifname> }",
    ]);
    assert.deepEqual(refusal("{not json"), [500, "{ Invalid Json string ==> {not json }"]);
    assert.deepEqual(refusal("[]"), [500, "{ Unexpected Json string ==> [] }"]);
    assert.equal(cluster.agentCall(n1, "GET", "/vm-cfg/nobody").status, 404);
    const port = cluster.agentCall(n1, "POST", "/port", JSON.stringify({ id: vm }));
    assert.deepEqual(JSON.parse(port.body), { error: "{ Invalid or missing data for <instance-id> }" });
    const off = cluster.agentCall(n1, "PUT", `/enable-port/${vm}`);
    assert.deepEqual([off.status, JSON.parse(off.body)], [500, { error: `{Port Not found ${vm}}` }]);
  });

  it("plumbs a port posted on /port (Nova's vrouter-port-control) and drops it when a /syncports does not renew it", async () => {
    const pod = pods[5]!;
    const k8s = ["default-domain", "k8s-default"];
    const vm = await cluster.vnc.create("virtual-machine", { fq_name: ["nova-vm-1"] });
    const vmi = await cluster.vnc.create("virtual-machine-interface", {
      fq_name: [...k8s, "nova-port-1"],
      parent_type: "project",
      virtual_machine_refs: [{ uuid: vm.uuid }],
      virtual_network_refs: [{ to: [...k8s, "external"] }],
    });
    const iip = await cluster.vnc.create("instance-ip", {
      fq_name: ["nova-iip-1"],
      virtual_network_refs: [{ to: [...k8s, "external"] }],
      virtual_machine_interface_refs: [{ uuid: vmi.uuid }],
    });
    const addr = String((await cluster.vnc.read("instance-ip", iip.uuid))["instance_ip_address"]);
    const mac = (
      (await cluster.vnc.read("virtual-machine-interface", vmi.uuid))[
        "virtual_machine_interface_mac_addresses"
      ] as { mac_address: string[] }
    ).mac_address[0]!;
    const tap = `tapnova${vmi.uuid.slice(0, 6)}`;
    ip(["-n", n1.ns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", pod]);
    ip(["-n", pod, "link", "set", "eth0", "address", mac, "up"]);
    ip(["-n", pod, "addr", "add", `${addr}/24`, "dev", "eth0"]);
    ip(["-n", n1.ns, "link", "set", tap, "up"]);
    try {
      const doc = {
        id: vmi.uuid,
        "instance-id": vm.uuid,
        "display-name": "nova-vm-1",
        "ip-address": addr,
        "ip6-address": "None",
        "vn-id": (await cluster.vnc.readByFqName("virtual-network", [...k8s, "external"])).uuid,
        "vm-project-id": String(
          (await cluster.vnc.read("virtual-machine-interface", vmi.uuid))["parent_uuid"],
        ),
        "mac-address": mac,
        "system-name": tap,
        type: 0,
        "rx-vlan-id": -1,
        "tx-vlan-id": -1,
      };
      assert.equal(cluster.agentCall(n1, "POST", "/port", JSON.stringify(doc)).status, 200);
      assert.ok(existsSync(join(n1.portsRoot, vmi.uuid)), "the port file");
      await eventually(
        () => cluster.agentGet(n1, `/port/${vmi.uuid}`).status === 200,
        5000,
        "the port's config",
      );
      const got = JSON.parse(cluster.agentGet(n1, `/port/${vmi.uuid}`).body) as Record<string, unknown>;
      assert.equal(got["ip-address"], addr);
      await eventually(() => ping(pod, "100.64.10.254", 1), 5000, "the gateway through the plumbed tap");
      // A sync that this port is not posted again after: the stale cleaner (2 s here) removes it.
      assert.equal(cluster.agentCall(n1, "POST", "/syncports", "{}").status, 200);
      await eventually(
        () => cluster.agentGet(n1, `/port/${vmi.uuid}`).status === 404,
        8000,
        "the port dropped",
      );
      assert.ok(!existsSync(join(n1.portsRoot, vmi.uuid)), "its file too");
      await eventually(() => !ping(pod, "100.64.10.254", 1), 5000, "the tap unplugged");
    } finally {
      ip(["-n", n1.ns, "link", "del", tap]);
      await cluster.vnc.delete("instance-ip", iip.uuid);
      await cluster.vnc.delete("virtual-machine-interface", vmi.uuid);
      await cluster.vnc.delete("virtual-machine", vm.uuid);
    }
    await assertNothingLeft();
  });

  it("IPv6: a dual-stack VN gives pods both addresses; both families reach the gateway and the other compute", async () => {
    const [pa, pb] = [pods[5]!, pods[6]!];
    const ca = client("nsc-dual-a", pa, n1);
    const cb = client("nsc-dual-b", pb, n2);
    try {
      const a = await ca.request({ service: "dual", ifname: "nsm-dual" });
      const b = await cb.request({ service: "dual", ifname: "nsm-dual" });
      const [a4, a6] = a.context!.ipContext!.srcIpAddrs;
      const [b4, b6] = b.context!.ipContext!.srcIpAddrs;
      assert.match(a4!, /^100\.64\.30\.\d+\/24$/);
      assert.match(a6!, /^2001:db8:30:[0-9a-f:]+\/64$/);
      assert.match(b6!, /^2001:db8:30:[0-9a-f:]+\/64$/);
      assert.equal(a.context!.extraContext[tfKeys.gateway6], "2001:db8:30:0:ffff:ffff:ffff:fffe");
      assert.ok(ping(pa, "2001:db8:30:0:ffff:ffff:ffff:fffe", 2), "the v6 gateway in the VN's VRF");
      assert.ok(ping(pa, host(b6!), 2), "the pod on the other compute over IPv6");
      assert.ok(ping(pb, host(a4!), 2), "and over IPv4");
      const doc = JSON.parse(
        cluster.agentGet(n2, `/vm/${b.context!.extraContext[tfKeys.vmUuid]!}`).body,
      ) as Record<string, unknown>[];
      assert.equal(doc[0]!["v6-ip-address"], host(b6!));
      assert.equal(doc[0]!["v6-gateway"], "2001:db8:30:0:ffff:ffff:ffff:fffe");
      assert.equal(doc[0]!["ip-address"], host(b4!));
    } finally {
      await ca.closeAll();
      await cb.closeAll();
    }
    await assertNothingLeft();
  });

  it("two VNs with the same subnet work side by side, each in its own VRF, without reaching each other", async () => {
    const [a1, a2, b1, b2] = [pods[5]!, pods[6]!, pods[0]!, pods[1]!];
    const cs = [
      client("nsc-twa-1", a1, n1),
      client("nsc-twa-2", a2, n2),
      client("nsc-twb-1", b1, n1),
      client("nsc-twb-2", b2, n2),
    ];
    try {
      const conns = [];
      for (const [i, c] of cs.entries())
        conns.push(await c.request({ service: i < 2 ? "twin-a" : "twin-b", ifname: "nsm-twin" }));
      const addrs = conns.map((c) => host(c.context!.ipContext!.srcIpAddrs[0]!));
      // The same allocation in both VNs: the same addresses, on different networks.
      assert.deepEqual([addrs[2], addrs[3]], [addrs[0], addrs[1]]);
      const macOf = (pod: string) =>
        ip(["-n", pod, "-o", "link", "show", "nsm-twin"]).match(/link\/ether (\S+)/)![1]!;
      const neighOf = (pod: string, ipAddr: string) =>
        ip(["-n", pod, "neigh", "show", ipAddr, "dev", "nsm-twin"]).match(/lladdr (\S+)/)?.[1];
      for (const [from, to] of [
        [a1, a2],
        [b1, b2],
      ] as const) {
        assert.ok(ping(from, addrs[1]!, 2), `${from} reaches the pod of its own VN`);
        assert.equal(neighOf(from, addrs[1]!), macOf(to), "and it is that pod that answered");
        assert.ok(ping(from, "100.64.40.254", 1), "its VN's gateway");
      }
      // Without its twin, b1 reaches nothing at that address, though a2 in the other VN still holds it.
      await cs[3]!.closeAll();
      ip(["-n", b1, "neigh", "flush", "dev", "nsm-twin"]);
      assert.ok(!ping(b1, addrs[1]!, 2), "twin-b does not reach twin-a's pod");
      assert.ok(ping(a1, addrs[1]!, 1), "while twin-a still does");
    } finally {
      for (const c of cs) await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("reaches a pod from the internet through its floating IP", async () => {
    const c = client("nsc-fip", pods[2]!, n1);
    try {
      const conn = await c.request({ service: "external-fip", ifname: "nsm-fip" });
      const fip = conn.context!.extraContext[tfKeys.floatingIp]!;
      assert.match(fip, /^198\.51\.100\.\d+$/);
      const podIp = host(conn.context!.ipContext!.srcIpAddrs[0]!);
      await eventually(() => ping(cluster.inet, fip, 1), 5000, "the floating IP answers");
      assert.equal(await tcp(pods[2]!, podIp, cluster.inet, fip, 1 << 20), 1 << 20);
      // Its own traffic out leaves as its floating IP, not through the router's SNAT instance.
      const out = await tcpSeen(cluster.inet, internetIp, pods[2]!, internetIp, 1 << 10);
      assert.deepEqual(out, { bytes: 1 << 10, peer: fip });
    } finally {
      await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("fails clearly on an unknown VN and on an exhausted subnet, leaving nothing", async () => {
    // One client per interface: a client refuses a second interface in a prefix it already uses.
    const cs = Array.from({ length: 5 }, (_, i) => client(`nsc-bad-${i}`, pods[3]!, n1));
    try {
      await assert.rejects(
        cs[0]!.request({ service: "nowhere", ifname: "nsm-x" }),
        (e: { code: number; details: string }) => {
          assert.equal(e.code, status.NOT_FOUND);
          assert.match(e.details, /does-not-exist/);
          return true;
        },
      );
      // A /29 holds 8 addresses: network, broadcast, gateway and DNS leave 4.
      for (let i = 0; i < 4; i++) await cs[i]!.request({ service: "tiny", ifname: `nsm-t${i}` });
      await assert.rejects(
        cs[4]!.request({ service: "tiny", ifname: "nsm-t4" }),
        (e: { code: number; details: string }) => {
          assert.equal(e.code, status.RESOURCE_EXHAUSTED, e.details);
          assert.match(e.details, /exhausted/);
          return true;
        },
      );
      assert.ok(!links(pods[3]!).includes("nsm-t4"));
    } finally {
      for (const c of cs) await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("survives a slow agent and undoes everything when the agent fails", async () => {
    const c = client("nsc-faults", pods[3]!, n1);
    const faults = (body: object) =>
      inNs(n1.ns, [
        process.execPath,
        "-e",
        `fetch("http://127.0.0.1:9091/emulator/faults",{method:"PUT",body:${JSON.stringify(JSON.stringify(body))}}).then(r=>process.exit(r.status===200?0:1))`,
      ]);
    try {
      assert.equal(faults({ slowPolls: 4 }).code, 0);
      const slow = await c.request({ service: "external", ifname: "nsm-slow" });
      assert.ok(ping(pods[3]!, slow.context!.extraContext[tfKeys.gateway]!, 1));
      await c.closeAll();
      assert.equal(faults({ slowPolls: 0, failPosts: 1, failStatus: 500 }).code, 0);
      await assert.rejects(
        c.request({ service: "external", ifname: "nsm-500" }),
        (e: { code: number; details: string }) => {
          assert.equal(e.code, status.UNAVAILABLE, e.details);
          assert.match(e.details, /POST \/vm: 500/);
          return true;
        },
      );
      assert.ok(!links(pods[3]!).includes("nsm-500"));
      // An agent that never gets ready within the poll budget (31 polls here): DEADLINE_EXCEEDED, undone.
      assert.equal(faults({ slowPolls: 1000 }).code, 0);
      await assert.rejects(
        c.request({ service: "external", ifname: "nsm-never" }),
        (e: { code: number; details: string }) => {
          assert.equal(e.code, status.DEADLINE_EXCEEDED, e.details);
          assert.match(e.details, /not ready after 31 polls/);
          return true;
        },
      );
      assert.equal(faults({ slowPolls: 0 }).code, 0);
      assert.ok(!links(pods[3]!).includes("nsm-never"));
    } finally {
      await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("keeps a connection across an endpoint restart: its creates meet 409s and read the objects back", async () => {
    const c = client("nsc-409", pods[3]!, n1);
    try {
      const first = await c.request({ service: "external", ifname: "nsm-409" });
      const vms = (await cluster.vnc.list("virtual-machine")).length;
      await n1.procs.get("nse-tf")!.kill();
      await cluster.startNse(n1, 1);
      // The refresh reaches an endpoint that knows nothing of the connection: every create answers 409.
      const again = await c.request({ service: "external", ifname: "nsm-409", id: first.id });
      assert.equal(again.context!.extraContext[tfKeys.vmUuid], first.context!.extraContext[tfKeys.vmUuid]);
      assert.deepEqual(again.context!.ipContext!.srcIpAddrs, first.context!.ipContext!.srcIpAddrs);
      assert.equal((await cluster.vnc.list("virtual-machine")).length, vms);
      assert.ok(ping(pods[3]!, first.context!.extraContext[tfKeys.gateway]!, 1));
    } finally {
      await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("adopts live ports after a forwarder kill -9 and restart, and removes the ports nobody refreshes", async () => {
    const keep = client("nsc-keep", pods[0]!, n1);
    const lose = client("nsc-lose", pods[1]!, n1);
    try {
      const a = await keep.request({ service: "external", ifname: "nsm-keep" });
      const b = await lose.request({ service: "external", ifname: "nsm-lose" });
      const tapA = tapName(a.context!.extraContext[tfKeys.vmiUuid]!);
      const tapB = tapName(b.context!.extraContext[tfKeys.vmiUuid]!);
      const vmB = b.context!.extraContext[tfKeys.vmUuid]!;
      const indexOf = (tap: string) => ip(["-n", n1.ns, "-o", "link", "show", tap]).split(":")[0];
      const before = indexOf(tapA);
      await n1.procs.get("fwd-tf")!.kill();
      await cluster.startTfForwarder(n1, 1, ["--orphan-grace", "2s"]);
      const again = await keep.request({ service: "external", ifname: "nsm-keep", id: a.id });
      assert.deepEqual(again.context!.ipContext!.srcIpAddrs, a.context!.ipContext!.srcIpAddrs);
      assert.equal(indexOf(tapA), before, "the live port was adopted, not rebuilt");
      assert.ok(ping(pods[0]!, a.context!.extraContext[tfKeys.gateway]!, 1));
      // The other port's connection was not refreshed within the grace: tap, port files, subscription go.
      await eventually(() => !links(n1.ns).includes(tapB), 10_000, "the orphaned tap removed");
      assert.ok(links(n1.ns).includes(tapA));
      assert.equal(cluster.agentGet(n1, `/vm/${vmB}`).status, 404);
      assert.ok(!existsSync(join(n1.portsRoot, "vm", b.context!.extraContext[tfKeys.vmName]!)));
    } finally {
      await keep.closeAll();
      await lose.closeAll().catch(() => undefined);
    }
    await assertNothingLeft();
  });

  it("heals a TF connection across a TF forwarder kill -9 and restart without losing a packet", async () => {
    const r = await tfForwarderRestart(cluster, n1, pods[0]!);
    assert.equal(r.kind, "restore", JSON.stringify(r));
    assert.equal(r.lost, 0, JSON.stringify(r));
    assert.ok(r.flowsAtEnd, JSON.stringify(r));
    await assertNothingLeft();
  });

  it("keeps live connections through a config API outage; fails new ones clearly; catches up after", async () => {
    const a = client("nsc-live-1", pods[0]!, n1);
    const b = client("nsc-live-2", pods[1]!, n2);
    const c = client("nsc-down", pods[3]!, n1);
    try {
      await a.request({ service: "external", ifname: "nsm-live" });
      const cb = await b.request({ service: "external", ifname: "nsm-live" });
      const ipB = host(cb.context!.ipContext!.srcIpAddrs[0]!);
      await cluster.config.stop();
      await sleep(1000); // a few agent syncs against a dead config API
      assert.ok(ping(pods[0]!, ipB, 2), "the data plane stays while the config API is down");
      await assert.rejects(c.request({ service: "external", ifname: "nsm-down" }), (e: { code: number }) => {
        assert.equal(e.code, status.UNAVAILABLE);
        return true;
      });
      assert.ok(!links(pods[3]!).includes("nsm-down"));
      // A Close during the outage: the endpoint retries its deletes until TF is back.
      await a.closeAll();
      assert.ok(!links(pods[0]!).includes("nsm-live"));
      await cluster.startConfig();
      const conn = await c.request({ service: "external", ifname: "nsm-down" });
      assert.ok(ping(pods[3]!, conn.context!.extraContext[tfKeys.gateway]!, 1));
      assert.ok(ping(pods[3]!, ipB, 2));
    } finally {
      await a.closeAll();
      await b.closeAll();
      await c.closeAll();
    }
    await assertNothingLeft();
  });

  it("removes a dead endpoint's TF objects after its restart when nobody claims them", async () => {
    const c = client("nsc-orphan", pods[3]!, n1);
    await c.request({ service: "external", ifname: "nsm-orphan" });
    await n1.procs.get("nse-tf")!.kill();
    // The Close cleans the pod and the agent, but cannot reach the endpoint.
    await c.closeAll().catch(() => undefined);
    assert.ok((await cluster.vnc.list("virtual-machine")).some((v) => v.fq_name[0]!.startsWith("nsm__")));
    await cluster.startNse(n1, 1, ["--orphan-grace", "1s"]);
    await assertNothingLeft();
  });

  it("cleans up after a client that dies (kill -9) once its token expires", async () => {
    const nsc = await startComponent(
      [
        "nsc",
        "--name",
        "nsc-dies",
        "--connect-to",
        n1.nsmgrSock,
        "--netns",
        cluster.net.path(pods[3]!),
        "--service",
        "kernel://external/nsm-dies",
        "--labels",
        `nodeName=${n1.name}`,
        "--max-token-lifetime",
        "3s",
      ],
      "nsc connected",
      { NODE_NAME: n1.name },
      30_000,
    );
    await eventually(() => links(pods[3]!).includes("nsm-dies"), 10_000, "the client's interface");
    await nsc.kill();
    await assertNothingLeft();
    assert.ok(!links(pods[3]!).includes("nsm-dies"));
  });
});
