// The tfvn element's answer: TF's addresses of every family in the connection's IP context, each family's
// routes through its own gateway, the instance-ip ids in extra_context; Close and a failed Request remove
// every instance-ip.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import type { Connection } from "../../api/connection.js";
import { NetworkServiceRequest } from "../../api/networkservice.js";
import { chain, type NetworkServiceElement } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { FakeVnc, ipamSubnet, seedVn, seedVrouter, type FakeVnOptions } from "./fakevnc.js";
import { tfKeys } from "./keys.js";
import { tfVnServer } from "./vnendpoint.js";
import { VnPorts } from "./vnports.js";

const log = pino({ level: "silent" });
const v4 = ipamSubnet("100.64.0.0/24", "sn-v4", ["192.0.2.0/24"]);
const v6 = ipamSubnet("2001:db8:1::/64", "sn-v6", ["2001:db8:99::/48"]);
const gw4 = "100.64.0.254";
const gw6 = "2001:db8:1:0:ffff:ffff:ffff:fffe";

function endpoint(vn: FakeVnOptions, defaultRoute: "auto" | "always" | "never" = "auto") {
  const vnc = new FakeVnc();
  const fq = seedVn(vnc, "net", vn);
  seedVrouter(vnc, "node-1");
  let failNext = false;
  const tail: NetworkServiceElement = {
    name: "tail",
    request: (req, ctx, next) => {
      if (failNext) throw new StatusError(status.UNAVAILABLE, "downstream failed");
      return next.request(req, ctx);
    },
  };
  const c = chain([
    tfVnServer({ ports: new VnPorts(vnc, { vrouter: "node-1", defaultRoute }, log), vnOf: () => fq }),
    tail,
  ]);
  const meta = new ConnectionMetadata();
  const ctx = (): CallContext => {
    const x = new CallContext(log, new AbortController().signal);
    x.connection = meta;
    return x;
  };
  return {
    vnc,
    failDownstream: () => (failNext = true),
    request: (id = "c1"): Promise<Connection> =>
      c.request(NetworkServiceRequest.fromPartial({ connection: { id, networkService: "net" } }), ctx()),
    close: (conn: Connection): Promise<void> => c.close(conn, ctx()),
  };
}

describe("tfvn connection context", () => {
  it("v4-only: unchanged — one address, routes via the v4 gateway, v4 keys only", async () => {
    const e = endpoint({ subnets: [v4] }, "always");
    const conn = await e.request();
    const ip = conn.context!.ipContext!;
    assert.deepEqual(ip.srcIpAddrs, ["100.64.0.252/24"]);
    assert.deepEqual(ip.srcRoutes, [
      { prefix: "192.0.2.0/24", nextHop: gw4 },
      { prefix: "0.0.0.0/0", nextHop: gw4 },
    ]);
    const x = conn.context!.extraContext;
    assert.equal(x[tfKeys.gateway], gw4);
    assert.equal(x[tfKeys.dns], "100.64.0.253");
    assert.equal(x[tfKeys.iipUuid], e.vnc.all("instance-ip")[0]!.uuid);
    for (const k of [tfKeys.iip6Uuid, tfKeys.gateway6, tfKeys.dns6]) assert.equal(x[k], undefined, k);
    assert.equal(conn.context!.ethernetContext!.dstMac, "00:00:5e:00:01:00");
  });

  it("v6-only: the v6 address, its routes and ::/0 via the v6 gateway, v6 keys only", async () => {
    const e = endpoint({ subnets: [v6] }, "always");
    const conn = await e.request();
    const ip = conn.context!.ipContext!;
    assert.deepEqual(ip.srcIpAddrs, ["2001:db8:1:0:ffff:ffff:ffff:fffc/64"]);
    assert.deepEqual(ip.srcRoutes, [
      { prefix: "2001:db8:99::/48", nextHop: gw6 },
      { prefix: "::/0", nextHop: gw6 },
    ]);
    const x = conn.context!.extraContext;
    assert.equal(x[tfKeys.iip6Uuid], e.vnc.all("instance-ip")[0]!.uuid);
    assert.equal(x[tfKeys.gateway6], gw6);
    assert.equal(x[tfKeys.dns6], "2001:db8:1:0:ffff:ffff:ffff:fffd");
    for (const k of [tfKeys.iipUuid, tfKeys.gateway, tfKeys.dns]) assert.equal(x[k], undefined, k);
  });

  it("dual stack: both addresses, each family's routes via its own gateway", async () => {
    const e = endpoint({ subnets: [v4, v6], fabricSnat: true });
    const conn = await e.request();
    const ip = conn.context!.ipContext!;
    assert.deepEqual(ip.srcIpAddrs, ["100.64.0.252/24", "2001:db8:1:0:ffff:ffff:ffff:fffc/64"]);
    assert.deepEqual(ip.srcRoutes, [
      { prefix: "192.0.2.0/24", nextHop: gw4 },
      { prefix: "0.0.0.0/0", nextHop: gw4 },
      // SNAT is IPv4 in TF: no IPv6 default route through it.
      { prefix: "2001:db8:99::/48", nextHop: gw6 },
    ]);
    const x = conn.context!.extraContext;
    const iips = new Map(e.vnc.all("instance-ip").map((i) => [i["instance_ip_family"], i.uuid]));
    assert.equal(x[tfKeys.iipUuid], iips.get("v4"));
    assert.equal(x[tfKeys.iip6Uuid], iips.get("v6"));
    assert.equal(x[tfKeys.gateway], gw4);
    assert.equal(x[tfKeys.gateway6], gw6);
  });

  it("dual stack without external access: host routes only", async () => {
    const e = endpoint({ subnets: [v4, v6] });
    const conn = await e.request();
    assert.deepEqual(
      conn.context!.ipContext!.srcRoutes.map((r) => r.prefix),
      ["192.0.2.0/24", "2001:db8:99::/48"],
    );
  });

  it("a refresh keeps the same port and context", async () => {
    const e = endpoint({ subnets: [v4, v6] });
    const first = await e.request();
    const again = await e.request();
    assert.deepEqual(again.context, first.context);
    assert.equal(e.vnc.all("instance-ip").length, 2);
  });

  it("Close removes both instance-ips and the rest of the port", async () => {
    const e = endpoint({ subnets: [v4, v6] });
    const conn = await e.request();
    assert.equal(e.vnc.all("instance-ip").length, 2);
    await e.close(conn);
    for (const t of ["instance-ip", "virtual-machine-interface", "virtual-machine"])
      assert.deepEqual(e.vnc.all(t), [], `${t} left`);
  });

  it("a Request failing downstream removes both instance-ips", async () => {
    const e = endpoint({ subnets: [v4, v6] });
    e.failDownstream();
    await assert.rejects(e.request(), /downstream failed/);
    assert.deepEqual(e.vnc.all("instance-ip"), []);
    assert.deepEqual(e.vnc.all("virtual-machine"), []);
  });
});
