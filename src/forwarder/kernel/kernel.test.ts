// KernelDataPlane against the kernel, without the control plane: VXLAN sides, VNI collisions and cleanup.
// Namespaces carry a per-run prefix and are deleted afterwards.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Connection, Mechanism } from "../../api/connection.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { rootLogger } from "../../core/log.js";
import { inodeUrlOf } from "../../dataplane/index.js";
import { emptyConnection } from "../../networkservice/updatepath/updatepath.js";
import { Netns, ip, links } from "../../../test/helpers/netns.js";
import { KernelDataPlane } from "./kernel.js";

const root = process.getuid?.() === 0;
const net = new Netns();
let node: string, pod: string;
let dp: KernelDataPlane;

function ctx(): CallContext {
  const c = CallContext.background(rootLogger);
  c.connection = new ConnectionMetadata();
  return c;
}

function serverSide(
  vni: number,
  ifname: string,
): { conn: Connection; incoming: Mechanism; outgoing: Mechanism } {
  const conn: Connection = {
    ...emptyConnection(),
    id: `conn-${vni}`,
    networkService: "svc",
    context: {
      ipContext: {
        srcIpAddrs: ["169.254.50.2/32"],
        dstIpAddrs: ["169.254.50.1/32"],
        srcIpRequired: false,
        dstIpRequired: false,
        srcRoutes: [],
        dstRoutes: [{ prefix: "169.254.50.2/32", nextHop: "" }],
        excludedPrefixes: [],
        ipNeighbors: [],
        extraPrefixRequest: [],
        extraPrefixes: [],
        policies: [],
      },
      dnsContext: undefined,
      ethernetContext: undefined,
      extraContext: {},
      MTU: 0,
    },
  };
  return {
    conn,
    incoming: {
      cls: "REMOTE",
      type: "VXLAN",
      parameters: { src_ip: "198.18.60.2", dst_ip: "198.18.60.1", vni: String(vni), dst_port: "4789" },
    },
    outgoing: {
      cls: "LOCAL",
      type: "KERNEL",
      parameters: { name: ifname, inodeURL: inodeUrlOf(net.path(pod)) },
    },
  };
}

describe("KernelDataPlane VXLAN", { skip: !root && "needs root" }, () => {
  before(() => {
    node = net.add("node");
    pod = net.add("pod");
    const u = `${net.prefix}u`;
    ip(["-n", node, "link", "add", u, "type", "veth", "peer", "name", `${net.prefix}v`]);
    ip(["-n", node, "addr", "add", "198.18.60.1/24", "dev", u]);
    ip(["-n", node, "link", "set", u, "up"]);
    dp = new KernelDataPlane({
      owner: `${net.prefix}fwd`,
      tunnelIp: "198.18.60.1",
      nodeNetns: net.path(node),
    });
  });

  after(async () => {
    await dp?.settle();
    await dp?.close();
    net.cleanup();
    assert.deepEqual(net.leftovers(), []);
  });

  it("creates the endpoint-side VXLAN in the pod, tagged, with room for the header, and removes it", async () => {
    const s = serverSide(4100, "nsm-vx");
    const c = ctx();
    await dp.apply({ conn: s.conn, mechanism: s.incoming }, { conn: s.conn, mechanism: s.outgoing }, c);
    const detail = ip(["-n", pod, "-d", "link", "show", "nsm-vx"]);
    assert.match(detail, /vxlan id 4100 remote 198\.18\.60\.2 local 198\.18\.60\.1/);
    assert.match(detail, /mtu 1450 /);
    assert.match(detail, new RegExp(`alias nsm:${net.prefix}fwd:conn-4100`));
    assert.match(ip(["-n", pod, "addr", "show", "nsm-vx"]), /169\.254\.50\.1\/32/);
    assert.deepEqual(
      links(node).filter((l) => !l.startsWith(net.prefix)),
      [],
      "nothing of the connection in the node namespace",
    );
    await dp.release({ conn: s.conn, mechanism: s.incoming }, { conn: s.conn, mechanism: s.outgoing }, c);
    await dp.settle();
    assert.deepEqual(links(pod), []);
  });

  it("a VNI already used on the node → ALREADY_EXISTS, nothing left in the pod", async () => {
    ip([
      "-n",
      node,
      "link",
      "add",
      `${net.prefix}x`,
      "type",
      "vxlan",
      "id",
      "4200",
      "local",
      "198.18.60.1",
      "remote",
      "198.18.60.9",
      "dstport",
      "4789",
    ]);
    const s = serverSide(4200, "nsm-dup");
    await assert.rejects(
      dp.apply({ conn: s.conn, mechanism: s.incoming }, { conn: s.conn, mechanism: s.outgoing }, ctx()),
      (e) => (e as { code: status }).code === status.ALREADY_EXISTS && /VNI 4200/.test((e as Error).message),
    );
    assert.deepEqual(links(pod), []);
    ip(["-n", node, "link", "del", `${net.prefix}x`]);
  });

  it("after a restart, a connection rebuilt under a new name or closed loses the old incarnation's links at once", async () => {
    const legs = (s: ReturnType<typeof serverSide>) =>
      [
        { conn: s.conn, mechanism: s.incoming },
        { conn: s.conn, mechanism: s.outgoing },
      ] as const;
    const rebuilt = serverSide(4400, "nsm-old");
    const closed = serverSide(4500, "nsm-gone");
    closed.conn.context!.ipContext!.dstIpAddrs = ["169.254.50.3/32"];
    await dp.apply(...legs(rebuilt), ctx());
    await dp.apply(...legs(closed), ctx());
    // The forwarder restarts: a new incarnation with the same owner finds both links before it serves.
    const next = new KernelDataPlane({
      owner: `${net.prefix}fwd`,
      tunnelIp: "198.18.60.1",
      nodeNetns: net.path(node),
    });
    try {
      assert.equal(await next.scanOrphans(rootLogger), 2);
      // A reselect rebuilds the first under another name with the same addresses: no EADDRINUSE.
      const again = serverSide(4400, "nsm-new");
      const c = ctx();
      await next.apply(...legs(again), c);
      assert.deepEqual(links(pod).sort(), ["nsm-gone", "nsm-new"]);
      // The second is closed without this incarnation ever building it.
      await next.release(...legs(closed), ctx());
      await next.settle();
      assert.deepEqual(links(pod), ["nsm-new"]);
      assert.equal(await next.collectOrphans(0, rootLogger), 0, "nothing left to collect");
      await next.release(...legs(again), c);
      await next.settle();
      assert.deepEqual(links(pod), []);
    } finally {
      await next.close();
    }
  });

  it("a missing VNI → INVALID_ARGUMENT", async () => {
    const s = serverSide(4300, "nsm-novni");
    delete s.incoming.parameters.vni;
    await assert.rejects(
      dp.apply({ conn: s.conn, mechanism: s.incoming }, { conn: s.conn, mechanism: s.outgoing }, ctx()),
      (e) => (e as { code: status }).code === status.INVALID_ARGUMENT,
    );
    assert.deepEqual(links(pod), []);
  });
});
