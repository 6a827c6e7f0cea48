// VnPorts against an in-memory VNC: one instance-ip per family the VN has a subnet of (v4 only, v6 only,
// dual stack, flat-subnet IPAM), TF's addresses read back, routes and default routes per family, idempotent
// re-creation, removal of every instance-ip in TF's order, and undo of a half-made port.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import { StatusError } from "../../core/errors.js";
import { FakeVnc, ipamSubnet, seedVn, seedVrouter, type FakeVnOptions } from "./fakevnc.js";
import { VncError } from "./vnc.js";
import { routesOf, VnPorts, type VnPortsOptions } from "./vnports.js";

const log = pino({ level: "silent" });
const v4 = (routes: string[] = []) => ipamSubnet("100.64.0.0/24", "sn-v4", routes);
const v6 = (routes: string[] = []) => ipamSubnet("2001:db8:1::/64", "sn-v6", routes);

function setup(vn: FakeVnOptions, opts: Partial<VnPortsOptions> = {}) {
  const vnc = new FakeVnc();
  const fq = seedVn(vnc, "net", vn);
  seedVrouter(vnc, "node-1");
  return { vnc, fq, ports: new VnPorts(vnc, { vrouter: "node-1", ...opts }, log) };
}

async function rejects(p: Promise<unknown>, code: status): Promise<StatusError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail("expected a failure");
}

describe("VnPorts address families", () => {
  it("v4-only VN: one v4 instance-ip named after the VM, as before", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v4(["192.0.2.0/24"])] });
    const p = await ports.create("c1", fq, "nsm-1");
    const iips = vnc.all("instance-ip");
    assert.equal(iips.length, 1);
    assert.deepEqual(iips[0]!.fq_name, ["nsm__c1"]);
    assert.equal(iips[0]!["instance_ip_family"], "v4");
    assert.equal(iips[0]!["subnet_uuid"], "sn-v4");
    assert.deepEqual(p.addrs, [
      {
        family: "v4",
        iipUuid: iips[0]!.uuid,
        ip: "100.64.0.252",
        plen: 24,
        gateway: "100.64.0.254",
        dns: "100.64.0.253",
        routes: ["192.0.2.0/24"],
      },
    ]);
    assert.match(p.mac, /^02:/);
  });

  it("v6-only VN: one v6 instance-ip with its own name, the address read back from TF", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v6()] });
    const p = await ports.create("c1", fq, undefined);
    const iips = vnc.all("instance-ip");
    assert.equal(iips.length, 1);
    assert.deepEqual(iips[0]!.fq_name, ["nsm-v6__c1"]);
    assert.equal(iips[0]!["instance_ip_family"], "v6");
    assert.deepEqual(p.addrs, [
      {
        family: "v6",
        iipUuid: iips[0]!.uuid,
        ip: "2001:db8:1:0:ffff:ffff:ffff:fffc",
        plen: 64,
        gateway: "2001:db8:1:0:ffff:ffff:ffff:fffe",
        dns: "2001:db8:1:0:ffff:ffff:ffff:fffd",
        routes: [],
      },
    ]);
  });

  for (const flat of [false, true]) {
    it(`dual-stack VN${flat ? " (flat-subnet IPAM)" : ""}: a v4 and a v6 instance-ip, both on the VMI`, async () => {
      // v6 listed first: the port still has IPv4 first.
      const { vnc, fq, ports } = setup({ subnets: [v6(), v4()], flat });
      const p = await ports.create("c1", fq, undefined);
      assert.deepEqual(
        p.addrs.map((a) => [a.family, a.ip, a.plen]),
        [
          ["v4", "100.64.0.252", 24],
          ["v6", "2001:db8:1:0:ffff:ffff:ffff:fffc", 64],
        ],
      );
      const iips = vnc.all("instance-ip");
      assert.deepEqual(iips.map((i) => i["instance_ip_family"]).sort(), ["v4", "v6"]);
      for (const i of iips) {
        assert.deepEqual(
          (i["virtual_machine_interface_refs"] as { uuid: string }[]).map((r) => r.uuid),
          [p.vmiUuid],
        );
        assert.deepEqual(
          (i["virtual_network_refs"] as { uuid: string }[]).map((r) => r.uuid),
          [p.vnUuid],
        );
      }
    });
  }

  it("a second connection gets the next addresses of each family", async () => {
    const { fq, ports } = setup({ subnets: [v4(), v6()] });
    await ports.create("c1", fq, undefined);
    const p = await ports.create("c2", fq, undefined);
    assert.deepEqual(
      p.addrs.map((a) => a.ip),
      ["100.64.0.251", "2001:db8:1:0:ffff:ffff:ffff:fffb"],
    );
  });

  it("is idempotent: a restarted endpoint finds both instance-ips again (409 → read)", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v4(), v6()] });
    const first = await ports.create("c1", fq, undefined);
    const again = await new VnPorts(vnc, { vrouter: "node-1" }, log).create("c1", fq, undefined);
    assert.deepEqual(again, first);
    assert.equal(vnc.all("instance-ip").length, 2);
  });

  it("refuses a VN without subnets", async () => {
    const { ports, fq } = setup({ subnets: [] });
    const err = await rejects(ports.create("c1", fq, undefined), status.FAILED_PRECONDITION);
    assert.match(err.message, /has no IPAM subnet \(IPv4 or IPv6\)/);
  });
});

describe("VnPorts routes per family", () => {
  it("host routes go to the family of their subnet; none cross families", () => {
    const sn = v4(["192.0.2.0/24", "2001:db8:99::/48"]);
    assert.deepEqual(routesOf(sn, "v4", false), ["192.0.2.0/24"]);
    assert.deepEqual(routesOf(v6(["2001:db8:99::/48", "198.51.100.0/24"]), "v6", false), [
      "2001:db8:99::/48",
    ]);
  });

  it("adds each family's default route once when the VN reaches outside", () => {
    assert.deepEqual(routesOf(v4(), "v4", true), ["0.0.0.0/0"]);
    assert.deepEqual(routesOf(v6(["2001:db8:99::/48"]), "v6", true), ["2001:db8:99::/48", "::/0"]);
    // A host route that is already a default route, written differently, is not doubled.
    assert.deepEqual(routesOf(v6(["::0/0"]), "v6", true), ["::0/0"]);
  });

  const v4Only = [["0.0.0.0/0"], []];
  const both = [["0.0.0.0/0"], ["::/0"]];
  const none = [[], []];
  // TF's SNAT and the endpoint's floating IPs are IPv4: they give no IPv6 default route.
  const cases: [string, FakeVnOptions, Partial<VnPortsOptions>, string | undefined, string[][]][] = [
    ["no external access (auto)", { subnets: [v4(), v6()] }, {}, undefined, none],
    ["fabric SNAT (auto)", { subnets: [v4(), v6()], fabricSnat: true }, {}, undefined, v4Only],
    ["a floating IP (auto)", { subnets: [v4(), v6()] }, {}, "pool", v4Only],
    [
      "a public (router_external) VN (auto)",
      { subnets: [v4(), v6()], routerExternal: true },
      {},
      undefined,
      both,
    ],
    ["always", { subnets: [v4(), v6()] }, { defaultRoute: "always" }, undefined, both],
    [
      "never, even with SNAT",
      { subnets: [v4(), v6()], fabricSnat: true },
      { defaultRoute: "never" },
      undefined,
      none,
    ],
  ];
  for (const [what, vn, opts, pool, expected] of cases) {
    it(`default routes per family: ${what}`, async () => {
      const { vnc, fq, ports } = setup(vn, opts);
      let fipPool: string[] | undefined;
      if (pool) {
        const pub = seedVn(vnc, "public", { subnets: [ipamSubnet("203.0.113.0/24", "sn-pub")] });
        vnc.seed("floating-ip-pool", { fq_name: [...pub, pool] });
        fipPool = [...pub, pool];
      }
      const p = await ports.create("c1", fq, undefined, fipPool);
      assert.deepEqual(
        p.addrs.map((a) => a.routes),
        expected,
      );
    });
  }
});

describe("VnPorts removal", () => {
  it("Close removes both instance-ips, the VMI, the VM and the VR ref (TF's order, ref integrity kept)", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v4(), v6()] });
    const p = await ports.create("c1", fq, undefined);
    await ports.remove("c1", p);
    for (const t of ["instance-ip", "virtual-machine-interface", "virtual-machine"])
      assert.deepEqual(vnc.all(t), [], `${t} left`);
    const vr = vnc.all("virtual-router")[0]!;
    assert.deepEqual(vr["virtual_machine_refs"], []);
  });

  it("the orphan sweep (no port known, by VM name) removes both instance-ips too", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v4(), v6()] });
    await ports.create("c1", fq, undefined);
    assert.deepEqual(await ports.connectionsHere(), ["c1"]);
    await new VnPorts(vnc, { vrouter: "node-1" }, log).remove("c1");
    assert.deepEqual(vnc.all("instance-ip"), []);
    assert.deepEqual(vnc.all("virtual-machine"), []);
    await ports.remove("c1"); // already gone: fine
  });

  it("an exhausted v6 subnet fails the port and removes the v4 instance-ip made before it", async () => {
    const tiny = ipamSubnet("2001:db8:2::/126", "sn-tiny");
    const { vnc, fq, ports } = setup({ subnets: [v4(), tiny] });
    const err = await rejects(ports.create("c1", fq, undefined), status.RESOURCE_EXHAUSTED);
    assert.match(err.message, /exhausted/);
    for (const t of ["instance-ip", "virtual-machine-interface", "virtual-machine"])
      assert.deepEqual(vnc.all(t), [], `${t} left`);
  });

  it("a config API failing on the v6 instance-ip is UNAVAILABLE and leaves nothing", async () => {
    const { vnc, fq, ports } = setup({ subnets: [v4(), v6()] });
    vnc.failCreate = (type, body) =>
      type === "instance-ip" && body["instance_ip_family"] === "v6"
        ? new VncError("POST", "/instance-ips", 503, "Service Unavailable")
        : undefined;
    await rejects(ports.create("c1", fq, undefined), status.UNAVAILABLE);
    assert.deepEqual(vnc.all("instance-ip"), []);
    assert.deepEqual(vnc.all("virtual-machine"), []);
  });
});
