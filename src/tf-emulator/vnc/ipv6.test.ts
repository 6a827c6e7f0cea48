// IPv6 and dual-stack address management, as the real server does it (vnc_addr_mgmt.py, instance_ip.py):
// v6 subnet defaults, top-down allocation in huge prefixes, the family of instance-ips, overlap checks
// and the subnet parse error text.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VncClient, VncObject } from "../../forwarder/tf/vnc.js";
import { rejectsWith, subnetsOf, vnBody, withServer } from "./testkit.js";

describe("VNC emulator: IPv6", () => {
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ c, done } = await withServer()));
  after(() => done());

  const iip = (name: string, vn: VncObject, extra: Record<string, unknown> = {}): Promise<VncObject> =>
    c.create("instance-ip", { fq_name: [name], virtual_network_refs: [{ uuid: vn.uuid }], ...extra });
  const subnet = (prefix: string, len: number): Record<string, unknown> => ({
    subnet: { ip_prefix: prefix, ip_prefix_len: len },
  });

  it("fills v6 subnet defaults and allocates top-down in a /64", async () => {
    const vn = await c.create("virtual-network", vnBody("v6-only", subnet("2001:db8:1::5", 64)));
    const [sn] = subnetsOf(await c.read("virtual-network", vn.uuid));
    // The prefix is normalized to the network address, as netaddr does in the real validation.
    assert.deepEqual(sn!.subnet, { ip_prefix: "2001:db8:1::", ip_prefix_len: 64 });
    assert.equal(sn!.default_gateway, "2001:db8:1:0:ffff:ffff:ffff:fffe");
    assert.equal(sn!.dns_server_address, "2001:db8:1:0:ffff:ffff:ffff:fffd");
    assert.match(String(sn!.subnet_uuid), /^[0-9a-f-]{36}$/);

    const a = await c.read("instance-ip", (await iip("v6-a", vn)).uuid);
    assert.equal(a.instance_ip_address, "2001:db8:1:0:ffff:ffff:ffff:fffc");
    assert.equal(a.subnet_uuid, sn!.subnet_uuid);
    const b = await iip("v6-b", vn, { instance_ip_family: "v6" });
    assert.equal(
      (await c.read("instance-ip", b.uuid)).instance_ip_address,
      "2001:db8:1:0:ffff:ffff:ffff:fffb",
    );
    // Family v4 on a v6-only VN: no subnet of that family, nothing tried.
    await rejectsWith(
      iip("v6-c", vn, { instance_ip_family: "v4" }),
      400,
      "Virtual-Network(['default-domain', 'k8s-default', 'v6-only']) has exhausted subnet([])",
    );
  });

  it("serves dual stack: no family takes the first subnet, v6 the v6 one, requested addresses are checked", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("dual", subnet("10.20.0.0", 24), subnet("2001:db8:20::", 120)),
    );
    const [s4, s6] = subnetsOf(await c.read("virtual-network", vn.uuid));
    assert.equal(s4!.default_gateway, "10.20.0.254");
    assert.equal(s6!.default_gateway, "2001:db8:20::fe");
    assert.equal(s6!.dns_server_address, "2001:db8:20::fd");

    const plain = await c.read("instance-ip", (await iip("dual-a", vn)).uuid);
    assert.equal(plain.instance_ip_address, "10.20.0.252");
    assert.equal(plain.subnet_uuid, s4!.subnet_uuid);
    const six = await c.read("instance-ip", (await iip("dual-b", vn, { instance_ip_family: "v6" })).uuid);
    assert.equal(six.instance_ip_address, "2001:db8:20::fc");
    assert.equal(six.subnet_uuid, s6!.subnet_uuid);

    const asked = await iip("dual-c", vn, { instance_ip_address: "2001:db8:20:0::10" });
    assert.equal((await c.read("instance-ip", asked.uuid)).instance_ip_address, "2001:db8:20::10");
    await rejectsWith(
      iip("dual-d", vn, { instance_ip_address: "2001:db8:20::10" }),
      409,
      "IP address already in use",
    );
    await rejectsWith(
      iip("dual-e", vn, { instance_ip_address: "2001:db8:20::fd" }),
      409,
      "IP address already in use",
    );
    await rejectsWith(
      iip("dual-f", vn, { instance_ip_address: "2001:db8:21::1" }),
      400,
      "Virtual-Network(['default-domain', 'k8s-default', 'dual']) has exhausted subnet([])",
    );
  });

  it("allocates floating-ips from a v6 subnet", async () => {
    const vn = await c.create("virtual-network", vnBody("v6-public", subnet("2001:db8:ff::", 120)));
    const pool = await c.create("floating-ip-pool", {
      fq_name: [...vn.fq_name, "v6-pool"],
      parent_type: "virtual-network",
    });
    const fip = await c.create("floating-ip", {
      fq_name: [...pool.fq_name, "fip6"],
      parent_type: "floating-ip-pool",
    });
    assert.equal((await c.read("floating-ip", fip.uuid)).floating_ip_address, "2001:db8:ff::fc");
  });

  it("refuses overlapping v6 subnets in one VN, allows them across VNs", async () => {
    await rejectsWith(
      c.create(
        "virtual-network",
        vnBody("v6-overlap", subnet("2001:db8:30::", 64), subnet("2001:db8:30::", 96)),
      ),
      400,
      "Overlapping addresses: [IPNetwork('2001:db8:30::/64'), IPNetwork('2001:db8:30::/96')]",
    );
    await rejectsWith(
      c.create("virtual-network", vnBody("v4-overlap", subnet("10.30.0.0", 16), subnet("10.30.1.0", 24))),
      400,
      "Overlapping addresses: [IPNetwork('10.30.0.0/16'), IPNetwork('10.30.1.0/24')]",
    );
    const a = await c.create("virtual-network", vnBody("v6-same-a", subnet("2001:db8:31::", 64)));
    const b = await c.create(
      "virtual-network",
      vnBody("v6-same-b", subnet("2001:db8:31::", 64), subnet("10.31.0.0", 24)),
    );
    await c.delete("virtual-network", a.uuid);
    await c.delete("virtual-network", b.uuid);
  });

  it("answers TF's text for a subnet that does not parse", async () => {
    await rejectsWith(
      c.create("virtual-network", vnBody("bad-v6", subnet("2001:db8::zz", 64))),
      400,
      "Bad reference in create: Error validating reference network_ipam_refs value " +
        "{'to': ['default-domain', 'default-project', 'default-network-ipam'], 'attr': {'ipam_subnets': " +
        "[{'subnet': {'ip_prefix': '2001:db8::zz', 'ip_prefix_len': 64}}]}} Subnet type '2001:db8::zz/64' is invalid",
    );
    await rejectsWith(
      c.create("virtual-network", vnBody("bad-v4", subnet("10.0.0.0", 33))),
      400,
      /Subnet type '10\.0\.0\.0\/33' is invalid$/,
    );
  });
});
