// svc-monitor's SNAT instance for a logical router with an external gateway: its left VN, VM, ports and
// addresses appear with the router, follow it, are scheduled on a compute, and go with it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VncClient, VncObject } from "../../forwarder/tf/vnc.js";
import { snatNames } from "./svcmonitor.js";
import { project, refs, subnetsOf, vnBody, withServer } from "./testkit.js";

describe("VNC emulator: svc-monitor's SNAT instances", () => {
  let c: VncClient;
  let done: () => Promise<void>;
  before(
    async () =>
      ({ c, done } = await withServer({
        computes: [
          { name: "node-b", ip: "198.18.0.2" },
          { name: "node-a", ip: "198.18.0.1" },
        ],
      })),
  );
  after(() => done());

  const gw = (vn: VncObject): Record<string, unknown> => ({
    uuid: vn.uuid,
    attr: { logical_router_virtual_network_type: "ExternalGateway" },
  });
  const read = (type: string, fq: string[]): Promise<VncObject | undefined> =>
    c.readByFqName(type, fq).catch(() => undefined);
  const addressOf = async (iipName: string[]): Promise<string> =>
    String((await c.readByFqName("instance-ip", iipName))["instance_ip_address"]);

  it("makes the instance with the router, moves its right port with the gateway, removes it with the router", async () => {
    const inside = await c.create(
      "virtual-network",
      vnBody("snat-inside", { subnet: { ip_prefix: "10.50.0.0", ip_prefix_len: 24 } }),
    );
    const pub1 = await c.create(
      "virtual-network",
      vnBody("snat-pub1", { subnet: { ip_prefix: "203.0.113.0", ip_prefix_len: 28 } }),
    );
    const pub2 = await c.create(
      "virtual-network",
      vnBody("snat-pub2", { subnet: { ip_prefix: "198.51.100.0", ip_prefix_len: 28 } }),
    );
    const rPort = await c.create("virtual-machine-interface", {
      fq_name: [...project, "snat-lr-port"],
      parent_type: "project",
      virtual_network_refs: [{ uuid: inside.uuid }],
    });
    // A gateway without interfaces needs no SNAT yet.
    const lr = await c.create("logical-router", {
      fq_name: [...project, "snat-lr"],
      parent_type: "project",
      virtual_network_refs: [gw(pub1)],
    });
    const n = snatNames(project, lr.uuid);
    assert.equal(await read("virtual-machine", n.vm), undefined);

    await c.update("logical-router", lr.uuid, {
      virtual_network_refs: [gw(pub1)],
      virtual_machine_interface_refs: [{ uuid: rPort.uuid }],
    });
    const leftVn = await c.readByFqName("virtual-network", n.leftVn);
    assert.deepEqual(n.leftVn, [...project, `snat-si-left_si_${lr.uuid}`]);
    assert.deepEqual(subnetsOf(leftVn)[0]!["subnet"], { ip_prefix: "100.64.0.0", ip_prefix_len: 29 });
    const vm = await c.readByFqName("virtual-machine", n.vm);
    assert.equal(n.vm[0], `default-domain__k8s-default__si_${lr.uuid}__1`);
    for (const side of ["left", "right"] as const) {
      const vmi = await c.readByFqName("virtual-machine-interface", n.vmi(side));
      assert.deepEqual(vmi["virtual_machine_interface_properties"], { service_interface_type: side });
      assert.equal(refs(vmi, "virtual_machine_refs")[0]!.uuid, vm.uuid);
    }
    assert.match(await addressOf(n.iip("left")), /^100\.64\.0\.[1-6]$/);
    assert.match(await addressOf(n.iip("right")), /^203\.0\.113\.\d+$/, "an address of the gateway VN");
    // Scheduled on one compute (the least loaded; by name when even).
    assert.deepEqual(
      refs(vm, "virtual_router_back_refs").map((r) => r.to.at(-1)),
      ["node-a"],
    );

    await c.update("logical-router", lr.uuid, { virtual_network_refs: [gw(pub2)] });
    assert.match(
      await addressOf(n.iip("right")),
      /^198\.51\.100\.\d+$/,
      "the right port follows the gateway",
    );

    await c.delete("logical-router", lr.uuid);
    for (const [type, fq] of [
      ["virtual-network", n.leftVn],
      ["virtual-machine", n.vm],
      ["virtual-machine-interface", n.vmi("right")],
      ["instance-ip", n.iip("right")],
    ] as const)
      assert.equal(await read(type, fq), undefined, `${type} ${fq.join(":")} removed`);
    const nodeA = await c.readByFqName("virtual-router", ["default-global-system-config", "node-a"]);
    assert.deepEqual(refs(nodeA, "virtual_machine_refs"), []);
    // The gateway VN can go now: nothing of the instance holds it.
    await c.delete("virtual-network", pub1.uuid);
    await c.delete("virtual-network", pub2.uuid);
  });
});
