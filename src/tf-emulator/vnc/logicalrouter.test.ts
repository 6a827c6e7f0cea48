// Logical router checks of the real server (resources/logical_router.py): a VM's port cannot be a router
// interface, and the gateway VN cannot be an interface's VN, on create, PUT and ref-update.
import { after, before, describe, it } from "node:test";
import type { VncClient, VncObject } from "../../forwarder/tf/vnc.js";
import { project, rejectsWith, vnBody, withServer } from "./testkit.js";

describe("VNC emulator: logical-router", () => {
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ c, done } = await withServer()));
  after(() => done());

  const port = (name: string, vn: VncObject, extra: Record<string, unknown> = {}): Promise<VncObject> =>
    c.create("virtual-machine-interface", {
      fq_name: [...project, name],
      parent_type: "project",
      virtual_network_refs: [{ uuid: vn.uuid }],
      ...extra,
    });
  const gw = (vn: VncObject): Record<string, unknown> => ({
    uuid: vn.uuid,
    attr: { logical_router_virtual_network_type: "ExternalGateway" },
  });

  it("refuses a VM's port as router interface (409) and a gateway in an interface's VN (400)", async () => {
    const inside = await c.create(
      "virtual-network",
      vnBody("lr-inside", { subnet: { ip_prefix: "10.40.0.0", ip_prefix_len: 24 } }),
    );
    const outside = await c.create(
      "virtual-network",
      vnBody("lr-outside", { subnet: { ip_prefix: "10.41.0.0", ip_prefix_len: 24 } }),
    );
    const vm = await c.create("virtual-machine", { fq_name: ["lr-vm"] });
    const vmPort = await port("lr-vm-port", inside, { virtual_machine_refs: [{ uuid: vm.uuid }] });
    const rPort = await port("lr-port", inside);
    const proj = await c.readByFqName("project", project);

    // The text names the port's parent (the project here), as logical_router.py prints parent_uuid.
    await rejectsWith(
      c.create("logical-router", {
        fq_name: [...project, "lr-a"],
        virtual_machine_interface_refs: [{ uuid: vmPort.uuid }],
      }),
      409,
      `Port(${vmPort.uuid}) already in use by virtual-machine(${proj.uuid})`,
    );
    await rejectsWith(
      c.create("logical-router", {
        fq_name: [...project, "lr-b"],
        virtual_network_refs: [gw(inside)],
        virtual_machine_interface_refs: [{ uuid: rPort.uuid }],
      }),
      400,
      `Logical router interface and gateway cannot be inVN(${inside.uuid})`,
    );

    const lr = await c.create("logical-router", {
      fq_name: [...project, "lr-c"],
      virtual_network_refs: [gw(outside)],
      virtual_machine_interface_refs: [{ uuid: rPort.uuid }],
    });
    await rejectsWith(
      c.update("logical-router", lr.uuid, { virtual_network_refs: [gw(inside)] }),
      400,
      `Logical router interface and gateway cannot be inVN(${inside.uuid})`,
    );
    await rejectsWith(
      c.refUpdate("logical-router", lr.uuid, "virtual-machine-interface", vmPort.uuid, "ADD"),
      409,
      `Port(${vmPort.uuid}) already in use by virtual-machine(${proj.uuid})`,
    );
    await c.delete("logical-router", lr.uuid);
  });
});
