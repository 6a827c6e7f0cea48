// TfDataPlane against the kernel with a stub vRouter agent (loopback HTTP): the pod end gets TF's IPv4 and/or
// IPv6 addresses (IPv6 usable at once: no DAD, router advertisements off), each family's routes through its
// own gateway, default routes below the pod's own (metric 4096). Namespaces carry a per-run prefix and are
// deleted afterwards.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Connection } from "../../api/connection.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { rootLogger } from "../../core/log.js";
import { inodeUrlOf } from "../../dataplane/index.js";
import { emptyConnection } from "../../networkservice/updatepath/updatepath.js";
import { Netns, inNs, ip, links } from "../../../test/helpers/netns.js";
import { AgentClient, type PortInfo } from "./agent.js";
import { tfGatewayMac, tfKeys } from "./keys.js";
import { defaultRouteMetric, TfDataPlane } from "./tf.js";

const root = process.getuid?.() === 0;
const net = new Netns("nsmtf");
const vnUuid = "5a3d2f10-0000-4000-8000-00000000aaaa";
let node: string;
/** One pod per case: a released veth goes after the Close is answered, in the background. */
const pods: string[] = [];
let agentServer: Server;
let portDir: string;
let dp: TfDataPlane;
/** What the stub agent answers for GET /vm/<uuid>, per VM uuid. */
const vmDocs = new Map<string, PortInfo[]>();

/** Distinct in the first 11 characters, which name the tap. */
const uuid = (n: number, kind: number): string =>
  `${kind.toString(16).padStart(4, "0")}${n.toString(16).padStart(4, "0")}-0000-4000-8000-000000000000`;

function ctx(meta: ConnectionMetadata): CallContext {
  const c = CallContext.background(rootLogger);
  c.connection = meta;
  return c;
}

interface Family {
  ip: string;
  plen: number;
  gateway: string;
  routes: string[];
}

/** A connection as the tf-vn endpoint answers it, and the agent's document for its port. */
function tfConnection(n: number, v4?: Family, v6?: Family): { conn: Connection; doc: PortInfo } {
  const vm = uuid(n, 1);
  const vmi = uuid(n, 2);
  const fams = [v4, v6].filter((f): f is Family => f !== undefined);
  const conn: Connection = {
    ...emptyConnection(),
    id: `conn-${n}`,
    networkService: "net",
    context: {
      ipContext: {
        srcIpAddrs: fams.map((f) => `${f.ip}/${f.plen}`),
        dstIpAddrs: [],
        srcIpRequired: false,
        dstIpRequired: false,
        srcRoutes: fams.flatMap((f) => f.routes.map((prefix) => ({ prefix, nextHop: f.gateway }))),
        dstRoutes: [],
        excludedPrefixes: [],
        ipNeighbors: [],
        extraPrefixRequest: [],
        extraPrefixes: [],
        policies: [],
      },
      dnsContext: undefined,
      ethernetContext: {
        srcMac: `02:00:00:00:00:${n.toString(16).padStart(2, "0")}`,
        dstMac: tfGatewayMac,
        vlanTag: 0,
      },
      extraContext: {
        [tfKeys.vmUuid]: vm,
        [tfKeys.vmName]: `nsm__conn-${n}`,
        [tfKeys.vmiUuid]: vmi,
        [tfKeys.vnUuid]: vnUuid,
      },
      MTU: 0,
    },
  };
  const doc: PortInfo = {
    id: vmi,
    "instance-id": vm,
    "vn-id": vnUuid,
    "mac-address": conn.context!.ethernetContext!.srcMac,
    "system-name": `tap${vmi.slice(0, 11)}`,
    ...(v4 ? { "ip-address": v4.ip, plen: v4.plen, gateway: v4.gateway } : {}),
    ...(v6 ? { "v6-ip-address": v6.ip, "v6-gateway": v6.gateway } : {}),
  };
  return { conn, doc };
}

function legs(conn: Connection, ifname: string, pod: string) {
  const incoming = {
    conn,
    mechanism: {
      cls: "LOCAL",
      type: "KERNEL",
      parameters: { name: ifname, inodeURL: inodeUrlOf(net.path(pod)) },
    },
  };
  return [incoming, { conn, mechanism: { cls: "LOCAL", type: "NOOP", parameters: {} } }] as const;
}

interface IpAddr {
  addr_info: { family: string; local: string; prefixlen: number; tentative?: boolean; scope: string }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  metric?: number;
  prefsrc?: string;
  flags?: string[];
}

const globalAddrs = (pod: string, ifname: string): string[] =>
  (JSON.parse(ip(["-n", pod, "-j", "addr", "show", "dev", ifname])) as IpAddr[])
    .flatMap((l) => l.addr_info)
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}${a.tentative ? " tentative" : ""}`);

const routes = (pod: string, family: "-4" | "-6", ifname: string): IpRoute[] =>
  (JSON.parse(ip(["-n", pod, family, "-j", "route", "show", "dev", ifname])) as IpRoute[]).filter(
    (r) => r.gateway !== undefined,
  );

const sysctl = (pod: string, key: string): string =>
  inNs(pod, ["cat", `/proc/sys/net/ipv6/conf/${key}`]).out.trim();

const v4: Family = {
  ip: "100.64.10.252",
  plen: 24,
  gateway: "100.64.10.254",
  routes: ["198.51.100.0/24", "0.0.0.0/0"],
};
const v6: Family = {
  ip: "2001:db8:1:0:ffff:ffff:ffff:fffc",
  plen: 64,
  gateway: "2001:db8:1:0:ffff:ffff:ffff:fffe",
  routes: ["2001:db8:99::/48", "::/0"],
};

describe("TfDataPlane address families", { skip: !root && "needs root" }, () => {
  before(async () => {
    node = net.add("node");
    for (let i = 0; i < 3; i++) {
      const pod = net.add(`pod${i}`);
      // As a namespace may start: IPv6 off for new interfaces, router advertisements accepted.
      inNs(pod, ["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"]);
      pods.push(pod);
    }
    portDir = mkdtempSync(join(tmpdir(), "nsmtf-ports-"));
    agentServer = createServer((req, res) => {
      const path = req.url ?? "";
      const send = (code: number, body: unknown): void => {
        res.writeHead(code, { "Content-Type": "application/json" });
        res.end(JSON.stringify(body));
      };
      req.resume();
      req.on("end", () => {
        if (req.method === "GET" && path.startsWith("/vm-cfg/"))
          return send(200, [{ annotations: ["{index:0/1}"] }]);
        if (req.method === "POST" && path === "/vm") return send(200, {});
        if (req.method === "DELETE") return send(200, {});
        const doc = vmDocs.get(path.slice("/vm/".length));
        if (req.method === "GET" && doc) return send(200, doc);
        send(404, { error: "not found" });
      });
    });
    await new Promise<void>((r) => agentServer.listen(0, "127.0.0.1", r));
    const port = (agentServer.address() as AddressInfo).port;
    dp = new TfDataPlane({
      owner: `${net.prefix}fwd`,
      agent: new AgentClient({ url: `http://127.0.0.1:${port}`, portDir }),
      poll: { intervalMs: 20, retries: 5 },
      nodeNetns: net.path(node),
    });
  });

  after(async () => {
    await dp?.close();
    agentServer?.closeAllConnections();
    await new Promise<void>((r) => (agentServer ? agentServer.close(() => r()) : r()));
    if (portDir) rmSync(portDir, { recursive: true, force: true });
    net.cleanup();
    assert.deepEqual(net.leftovers(), []);
  });

  const cases: [string, Family | undefined, Family | undefined][] = [
    ["IPv4 only", v4, undefined],
    ["IPv6 only", undefined, v6],
    ["dual stack", v4, v6],
  ];
  cases.forEach(([what, f4, f6], i) => {
    it(`${what}: addresses, per-family routes via their own gateway, default routes at metric ${defaultRouteMetric}`, async () => {
      const ifname = `nsm-tf${i}`;
      const pod = pods[i]!;
      const { conn, doc } = tfConnection(i + 1, f4, f6);
      vmDocs.set(conn.context!.extraContext[tfKeys.vmUuid]!, [doc]);
      const meta = new ConnectionMetadata();
      const [incoming, outgoing] = legs(conn, ifname, pod);
      await dp.apply(incoming, outgoing, ctx(meta));
      try {
        assert.deepEqual(
          globalAddrs(pod, ifname),
          [f4, f6].filter(Boolean).map((f) => `${f!.ip}/${f!.plen}`),
        );
        const r4 = routes(pod, "-4", ifname);
        const r6 = routes(pod, "-6", ifname);
        assert.deepEqual(
          r4.map((r) => [r.dst, r.gateway, r.metric ?? 0]),
          f4
            ? [
                ["default", f4.gateway, defaultRouteMetric],
                ["198.51.100.0/24", f4.gateway, 0],
              ]
            : [],
        );
        assert.deepEqual(
          r6.map((r) => [r.dst, r.gateway, r.metric]),
          f6
            ? [
                ["2001:db8:99::/48", f6.gateway, 1024],
                ["default", f6.gateway, defaultRouteMetric],
              ]
            : [],
        );
        for (const r of r6) assert.equal(r.prefsrc, f6!.ip);
        if (f6) {
          assert.equal(sysctl(pod, `${ifname}/disable_ipv6`), "0");
          assert.equal(sysctl(pod, `${ifname}/accept_ra`), "0");
        }
      } finally {
        await dp.release(incoming, outgoing, ctx(meta));
      }
    });
  });

  it("the pods' links are gone after release", async () => {
    for (let i = 0; i < 50 && pods.some((p) => links(p).length > 0); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(pods.flatMap(links), []);
    assert.deepEqual(links(node), []);
  });
});
