// The VNC config API emulator, driven through the real client as the forwarder and the fake agent use it:
// shapes, defaults, error texts (spec §2.3), address allocation, persistence and keystone mode.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { VncClient, type VncObject } from "../../forwarder/tf/vnc.js";
import { startVncServer, type RunningVncServer } from "./server.js";
import { StateFile } from "./statefile.js";
import type { StoreSnapshot } from "./store.js";
import { ipam, project, refs, rejectsWith, vnBody, withServer } from "./testkit.js";

describe("VNC emulator: API surface", () => {
  let s: RunningVncServer;
  let c: VncClient;
  let done: () => Promise<void>;
  before(
    async () => ({ s, c, done } = await withServer({ computes: [{ name: "node-1", ip: "198.18.0.11" }] })),
  );
  after(() => done());

  it("serves the homepage the official client derives its URIs from", async () => {
    const home = await c.homepage();
    assert.equal(home.href, s.url);
    const link = (rel: string, name: string): string | undefined =>
      home.links.find((l) => l.link.rel === rel && l.link.name === name)?.link.href;
    assert.equal(link("collection", "virtual-network"), `${s.url}/virtual-networks`);
    assert.equal(link("resource-base", "network-policy"), `${s.url}/network-policy`);
    assert.equal(link("collection", "network-policy"), `${s.url}/network-policys`);
    assert.equal(link("action", "name-to-id"), `${s.url}/fqname-to-id`);
    assert.equal(link("action", "id-to-name"), `${s.url}/id-to-fqname`);
    assert.equal(link("action", "ref-update"), `${s.url}/ref-update`);
  });

  it("seeds the default objects and the computes' virtual-routers", async () => {
    for (const [type, fq] of [
      ["domain", ["default-domain"]],
      ["project", ["default-domain", "default-project"]],
      ["project", project],
      ["network-ipam", ipam],
      ["virtual-network", ["default-domain", "default-project", "ip-fabric"]],
      ["virtual-network", ["default-domain", "default-project", "__link_local__"]],
      ["virtual-network", ["default-domain", "default-project", "default-virtual-network"]],
      ["routing-instance", ["default-domain", "default-project", "ip-fabric", "__default__"]],
      ["global-system-config", ["default-global-system-config"]],
      ["global-vrouter-config", ["default-global-system-config", "default-global-vrouter-config"]],
    ] as const) {
      const o = await c.readByFqName(type, [...fq]);
      assert.deepEqual(o.fq_name, fq);
    }
    const gvc = await c.readByFqName("global-vrouter-config", [
      "default-global-system-config",
      "default-global-vrouter-config",
    ]);
    assert.deepEqual((gvc.encapsulation_priorities as { encapsulation: string[] }).encapsulation[0], "VXLAN");
    const vr = await c.readByFqName("virtual-router", ["default-global-system-config", "node-1"]);
    assert.equal(vr.virtual_router_ip_address, "198.18.0.11");
    assert.equal(vr.parent_type, "global-system-config");
  });

  it("does create, read, update, list and delete for every emulated type", async () => {
    const gsc = await c.readByFqName("global-system-config", ["default-global-system-config"]);
    const vn = await c.create(
      "virtual-network",
      vnBody("crud-vn", { subnet: { ip_prefix: "10.9.0.0", ip_prefix_len: 24 } }),
    );
    const proj = await c.readByFqName("project", project);
    const vm = await c.create("virtual-machine", { fq_name: ["crud-vm"] });
    const cases: { type: string; body: Record<string, unknown>; parent?: string; prop: string }[] = [
      { type: "domain", body: { fq_name: ["crud-domain"] }, prop: "display_name" },
      {
        type: "project",
        body: { fq_name: ["default-domain", "crud-project"] },
        parent: "default-domain",
        prop: "display_name",
      },
      { type: "network-ipam", body: { fq_name: [...project, "crud-ipam"] }, prop: "network_ipam_mgmt" },
      { type: "virtual-network", body: { fq_name: [...project, "crud-vn2"] }, prop: "is_shared" },
      {
        type: "virtual-machine",
        body: { fq_name: ["crud-vm2"], server_type: "container" },
        prop: "server_type",
      },
      {
        type: "virtual-machine-interface",
        body: { fq_name: [...project, "crud-vmi"], virtual_network_refs: [{ uuid: vn.uuid }] },
        prop: "port_security_enabled",
      },
      {
        type: "instance-ip",
        body: { fq_name: ["crud-iip"], virtual_network_refs: [{ to: vn.fq_name }] },
        prop: "instance_ip_mode",
      },
      {
        type: "virtual-router",
        body: {
          fq_name: ["default-global-system-config", "crud-vr"],
          virtual_router_ip_address: "198.18.0.99",
        },
        prop: "virtual_router_type",
      },
      { type: "floating-ip-pool", body: { fq_name: [...vn.fq_name, "crud-pool"] }, prop: "display_name" },
      {
        type: "logical-router",
        body: { fq_name: [...project, "crud-lr"], logical_router_gateway_external: false },
        prop: "logical_router_type",
      },
      {
        type: "routing-instance",
        body: { fq_name: [...vn.fq_name, "crud-ri"] },
        prop: "routing_instance_is_default",
      },
      { type: "global-system-config", body: { fq_name: ["crud-gsc"] }, prop: "autonomous_system" },
      {
        type: "global-vrouter-config",
        body: { fq_name: ["default-global-system-config", "crud-gvc"] },
        prop: "vxlan_network_identifier_mode",
      },
      { type: "security-group", body: { fq_name: [...project, "crud-sg"] }, prop: "security_group_entries" },
      { type: "network-policy", body: { fq_name: [...project, "crud-np"] }, prop: "network_policy_entries" },
    ];
    const values: Record<string, unknown> = {
      display_name: "renamed",
      network_ipam_mgmt: { ipam_dns_method: "none" },
      is_shared: true,
      server_type: "virtual-server",
      port_security_enabled: false,
      instance_ip_mode: "active-standby",
      virtual_router_type: "embedded",
      logical_router_type: "vxlan-routing",
      routing_instance_is_default: false,
      autonomous_system: 64513,
      vxlan_network_identifier_mode: "configured",
      security_group_entries: { policy_rule: [] },
      network_policy_entries: { policy_rule: [] },
    };
    for (const k of cases) {
      const made = await c.create(k.type, k.body);
      assert.deepEqual(made.fq_name, k.body.fq_name, k.type);
      const read = await c.read(k.type, made.uuid);
      assert.equal(read.uuid, made.uuid, k.type);
      assert.equal(read.display_name, (k.body.fq_name as string[]).at(-1), `${k.type} display_name default`);
      assert.ok(read.id_perms && read.perms2, `${k.type} id_perms/perms2`);
      await c.update(k.type, made.uuid, { [k.prop]: values[k.prop] });
      assert.deepEqual((await c.read(k.type, made.uuid))[k.prop], values[k.prop], `${k.type} update`);
      const listed = await c.list(k.type, made.parent_uuid ? { parent_id: made.parent_uuid as string } : {});
      assert.ok(
        listed.some((o) => o.uuid === made.uuid && typeof o.href === "string"),
        `${k.type} list`,
      );
      await c.delete(k.type, made.uuid);
      assert.equal(await c.tryRead(k.type, made.uuid), undefined, `${k.type} delete`);
    }
    // Parents the table derives when parent_type is omitted.
    const lr = await c.create("logical-router", { fq_name: [...project, "crud-lr2"] });
    assert.equal(lr.parent_type, "project");
    assert.equal(lr.parent_uuid, proj.uuid);
    assert.equal((await c.create("virtual-machine", { fq_name: ["crud-vm3"] })).parent_type, undefined);
    await Promise.all([c.delete("logical-router", lr.uuid), c.delete("virtual-machine", vm.uuid)]);
    assert.ok(gsc.uuid);
  });

  it("reads refs, back-refs and children", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("refs-vn", { subnet: { ip_prefix: "10.8.0.0", ip_prefix_len: 24 } }),
    );
    const pool = await c.create("floating-ip-pool", {
      fq_name: [...vn.fq_name, "pool"],
      parent_type: "virtual-network",
    });
    const vmi = await c.create("virtual-machine-interface", {
      fq_name: [...project, "refs-vmi"],
      parent_type: "project",
      virtual_network_refs: [{ to: vn.fq_name }],
    });
    const iip = await c.create("instance-ip", {
      fq_name: ["refs-iip"],
      virtual_network_refs: [{ uuid: vn.uuid }],
      virtual_machine_interface_refs: [{ uuid: vmi.uuid }],
    });

    const vnRead = await c.read("virtual-network", vn.uuid);
    assert.deepEqual(
      refs(vnRead, "floating_ip_pools").map((r) => r.uuid),
      [pool.uuid],
    );
    assert.deepEqual(
      refs(vnRead, "routing_instances").map((r) => r.to),
      [[...vn.fq_name, "refs-vn"]],
    );
    assert.deepEqual(
      refs(vnRead, "virtual_machine_interface_back_refs").map((r) => r.uuid),
      [vmi.uuid],
    );
    assert.deepEqual(
      refs(vnRead, "instance_ip_back_refs").map((r) => r.uuid),
      [iip.uuid],
    );
    assert.equal(
      refs(vnRead, "network_ipam_refs")[0]!.href,
      `${s.url}/network-ipam/${refs(vnRead, "network_ipam_refs")[0]!.uuid}`,
    );

    const vmiRead = await c.read("virtual-machine-interface", vmi.uuid);
    const vnRef = refs(vmiRead, "virtual_network_refs")[0]!;
    assert.deepEqual(vnRef, {
      to: vn.fq_name,
      href: `${s.url}/virtual-network/${vn.uuid}`,
      attr: null,
      uuid: vn.uuid,
    });
    assert.deepEqual(
      refs(vmiRead, "instance_ip_back_refs").map((r) => r.to),
      [["refs-iip"]],
    );
    // Like the real server, a port joins its VN's routing-instance.
    const riRef = refs(vmiRead, "routing_instance_refs")[0]!;
    assert.deepEqual(riRef.to, [...vn.fq_name, "refs-vn"]);
    assert.equal(riRef.attr?.direction, "both");

    const proj = await c.readByFqName("project", project);
    assert.ok(refs(proj, "virtual_networks").some((r) => r.uuid === vn.uuid));
    assert.ok(refs(proj, "virtual_machine_interfaces").some((r) => r.uuid === vmi.uuid));
    assert.equal(proj.parent_type, "domain");

    // PUT: a ref list present replaces the stored one; an empty list clears it.
    await c.update("instance-ip", iip.uuid, { virtual_machine_interface_refs: [] });
    assert.equal((await c.read("instance-ip", iip.uuid)).virtual_machine_interface_refs, undefined);

    await c.delete("instance-ip", iip.uuid);
    await c.delete("virtual-machine-interface", vmi.uuid);
    await c.delete("floating-ip-pool", pool.uuid);
    await c.delete("virtual-network", vn.uuid);
    // The VN's routing-instance went with it.
    assert.equal((await c.list("routing-instance", { fq_names: [[...vn.fq_name, "refs-vn"]] })).length, 0);
  });

  it("updates refs with /ref-update by uuid or fq_name, with and without attr", async () => {
    const vn = await c.create("virtual-network", { fq_name: [...project, "ru-vn"] });
    const np = await c.create("network-policy", { fq_name: [...project, "ru-np"] });
    const attr = { sequence: { major: 0, minor: 0 } };
    await c.refUpdate("virtual-network", vn.uuid, "network-policy", np.uuid, "ADD", attr);
    let read = await c.read("virtual-network", vn.uuid);
    assert.deepEqual(
      refs(read, "network_policy_refs").map((r) => [r.uuid, r.attr]),
      [[np.uuid, attr]],
    );
    assert.deepEqual(
      refs(await c.read("network-policy", np.uuid), "virtual_network_back_refs")[0]!.attr,
      attr,
    );

    // ADD of an existing ref replaces its attr.
    await c.refUpdate("virtual-network", vn.uuid, "network-policy", np.uuid, "ADD", {
      sequence: { major: 1, minor: 0 },
    });
    read = await c.read("virtual-network", vn.uuid);
    assert.equal(refs(read, "network_policy_refs").length, 1);

    await c.refUpdate("virtual-network", vn.uuid, "network-policy", np.uuid, "DELETE");
    assert.equal((await c.read("virtual-network", vn.uuid)).network_policy_refs, undefined);

    // By ref-fq-name, and underscored types, as older clients send them.
    const r = await fetch(`${s.url}/ref-update`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        type: "virtual_network",
        uuid: vn.uuid,
        "ref-type": "network_policy",
        "ref-fq-name": np.fq_name,
        operation: "ADD",
        attr: null,
      }),
    });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { uuid: vn.uuid });
    assert.equal(refs(await c.read("virtual-network", vn.uuid), "network_policy_refs")[0]!.uuid, np.uuid);

    await rejectsWith(
      c.refUpdate(
        "virtual-network",
        vn.uuid,
        "network-policy",
        "7e3bcbd5-0d6c-4c4f-9a6c-5d2e2f4a0000",
        "ADD",
      ),
      404,
      /not found/,
    );
    await c.refUpdate("virtual-network", vn.uuid, "network-policy", np.uuid, "DELETE");
    await c.delete("network-policy", np.uuid);
    await c.delete("virtual-network", vn.uuid);
  });

  it("maps names and ids both ways", async () => {
    const uuid = await c.fqNameToId("project", project);
    assert.deepEqual(await c.idToFqName(uuid), { type: "project", fq_name: project });
    await rejectsWith(
      c.fqNameToId("project", ["default-domain", "nope"]),
      404,
      "Name ['default-domain', 'nope'] not found",
    );
    await rejectsWith(c.idToFqName("00000000-0000-4000-8000-000000000000"), 404, /not found/);
  });

  it("lists with detail, fields, fq_names, obj_uuids, back_ref_id, filters and count", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("list-vn", { subnet: { ip_prefix: "10.7.0.0", ip_prefix_len: 24 } }),
    );
    const vmis: VncObject[] = [];
    for (const n of ["a", "b"])
      vmis.push(
        await c.create("virtual-machine-interface", {
          fq_name: [...project, `list-${n}`],
          virtual_network_refs: [{ uuid: vn.uuid }],
        }),
      );

    const detail = await c.list("virtual-machine-interface", { back_ref_id: vn.uuid, detail: true });
    assert.deepEqual(detail.map((o) => o.uuid).sort(), vmis.map((v) => v.uuid).sort());
    assert.ok(
      detail.every((o) => Array.isArray(o.virtual_network_refs) && o.virtual_machine_interface_mac_addresses),
    );

    const brief = await c.list("virtual-machine-interface", { obj_uuids: [vmis[0]!.uuid] });
    assert.deepEqual(Object.keys(brief[0]!).sort(), ["fq_name", "href", "uuid"]);

    const withFields = await c.list("virtual-machine-interface", {
      obj_uuids: [vmis[0]!.uuid],
      fields: ["virtual_network_refs"],
    });
    assert.equal(refs(withFields[0]!, "virtual_network_refs")[0]!.uuid, vn.uuid);

    const byName = await c.list("virtual-machine-interface", {
      fq_names: [
        [...project, "list-b"],
        [...project, "none"],
      ],
    });
    assert.deepEqual(
      byName.map((o) => o.uuid),
      [vmis[1]!.uuid],
    );

    const filtered = await c.list("virtual-network", { filters: "display_name==list-vn" });
    assert.deepEqual(
      filtered.map((o) => o.uuid),
      [vn.uuid],
    );

    const count = await fetch(`${s.url}/virtual-machine-interfaces?back_ref_id=${vn.uuid}&count=true`);
    assert.deepEqual(await count.json(), { "virtual-machine-interfaces": { count: 2 } });

    for (const v of vmis) await c.delete("virtual-machine-interface", v.uuid);
    await c.delete("virtual-network", vn.uuid);
  });

  it("answers the real server's error texts", async () => {
    const vn = await c.create("virtual-network", { fq_name: [...project, "err-vn"] });
    await rejectsWith(
      c.create("virtual-network", { fq_name: [...project, "err-vn"] }),
      409,
      `['default-domain', 'k8s-default', 'err-vn'] already exists with uuid: ${vn.uuid}`,
    );
    await rejectsWith(
      c.create("virtual-network", { fq_name: [...project, "err-vn2"], uuid: vn.uuid }),
      409,
      `${vn.uuid} already exists with fq_name: ['default-domain', 'k8s-default', 'err-vn']`,
    );
    await rejectsWith(
      c.create("virtual-network", {
        fq_name: ["default-domain", "no-such-project", "vn"],
        parent_type: "project",
      }),
      400,
      "Parent ['default-domain', 'no-such-project'] type project does not exist",
    );
    await rejectsWith(
      c.create("virtual-machine-interface", { fq_name: [...project, "err-vmi"] }),
      400,
      "Virtual Machine Interface must have valide Virtual Network reference",
    );
    await rejectsWith(
      c.create("virtual-machine-interface", {
        fq_name: [...project, "err-vmi"],
        virtual_network_refs: [{ to: [...project, "nope"] }],
      }),
      400,
      // TF prints the request dict (Python repr) when a ref's target is unknown.
      "Unknown reference in resource create {'fq_name': ['default-domain', 'k8s-default', 'err-vmi'], " +
        "'virtual_network_refs': [{'to': ['default-domain', 'k8s-default', 'nope']}]}.",
    );
    await rejectsWith(
      c.create("virtual-network", { fq_name: ["default-domain", "err-vn-parent"], parent_type: "domain" }),
      400,
      "Invalid parent type: domain. Allowed types: ['project']",
    );
    await rejectsWith(c.create("instance-ip", { fq_name: ["err-iip"] }), 400, /virtual_network_refs/);
    await rejectsWith(
      c.read("virtual-network", "00000000-0000-4000-8000-000000000000"),
      404,
      "Unknown id: 00000000-0000-4000-8000-000000000000",
    );
    await rejectsWith(
      c.update("virtual-network", "00000000-0000-4000-8000-000000000000", { display_name: "x" }),
      404,
      "Unknown id: 00000000-0000-4000-8000-000000000000",
    );
    await rejectsWith(c.read("project", vn.uuid), 404, `No project object found for id ${vn.uuid}`);
    await rejectsWith(
      c.delete("virtual-network", "00000000-0000-4000-8000-000000000000"),
      404,
      "ID 00000000-0000-4000-8000-000000000000 does not exist",
    );
    await rejectsWith(c.delete("project", vn.uuid), 404, `No project object found for id ${vn.uuid}`);
    assert.equal(await c.deleteIfExists("virtual-network", "00000000-0000-4000-8000-000000000000"), false);

    const proj = await c.readByFqName("project", project);
    const err = await rejectsWith(
      c.delete("project", proj.uuid),
      409,
      /^Delete when children still present: \['http:/,
    );
    assert.ok(err.body.includes(`'${s.url}/virtual-network/${vn.uuid}'`), err.body);
    assert.match(err.message, /^VNC DELETE \/project\/[0-9a-f-]+: 409 Delete when children still present/);
    // default-project is a `default-*` child, but one with children of its own: it blocks too.
    const dom = await c.readByFqName("domain", ["default-domain"]);
    const defaultProject = await c.fqNameToId("project", ["default-domain", "default-project"]);
    const domErr = await rejectsWith(
      c.delete("domain", dom.uuid),
      409,
      /^Delete when children still present: /,
    );
    assert.ok(domErr.body.includes(defaultProject), domErr.body);

    await c.delete("virtual-network", vn.uuid);
  });

  it("answers HTTP-level errors in plain text and JSON with application/json", async () => {
    const bad = await fetch(`${s.url}/virtual-networks`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{nope",
    });
    assert.equal(bad.status, 400);
    assert.match(bad.headers.get("content-type") ?? "", /^text\/plain/);
    assert.match(await bad.text(), /not JSON/);
    const wrongEnvelope = await fetch(`${s.url}/virtual-networks`, {
      method: "POST",
      body: JSON.stringify({ "virtual-machine": {} }),
    });
    assert.equal(wrongEnvelope.status, 400);
    const unknown = await fetch(`${s.url}/no-such-things`);
    assert.equal(unknown.status, 404);
    assert.match(await unknown.text(), /^Unknown Request/);
    const ok = await fetch(`${s.url}/projects`);
    assert.equal(ok.headers.get("content-type"), "application/json");
    const relax = await fetch(`${s.url}/ref-relax-for-delete`, {
      method: "POST",
      body: JSON.stringify({ uuid: "a", "ref-uuid": "b" }),
    });
    // An unknown uuid is a 404 with api_server.py's text (it used to be accepted and ignored).
    assert.equal(relax.status, 404);
    assert.equal(await relax.text(), "uuid a not found");
  });

  it("derives a VMI's MAC from its uuid and keeps a given one", async () => {
    const vn = await c.readByFqName("virtual-network", [
      "default-domain",
      "default-project",
      "default-virtual-network",
    ]);
    const uuid = "4f7c2a1e-9b3d-4e8a-a1b2-c3d4e5f60718";
    await c.create("virtual-machine-interface", {
      uuid,
      fq_name: [...project, "mac-vmi"],
      virtual_network_refs: [{ uuid: vn.uuid }],
    });
    const vmi = await c.read("virtual-machine-interface", uuid);
    assert.deepEqual(vmi.virtual_machine_interface_mac_addresses, { mac_address: ["02:4f:7c:2a:1e:9b"] });
    const given = await c.create("virtual-machine-interface", {
      fq_name: [...project, "mac-vmi2"],
      virtual_network_refs: [{ uuid: vn.uuid }],
      virtual_machine_interface_mac_addresses: { mac_address: ["02-aa-bb-cc-dd-ee"] },
    });
    assert.deepEqual(
      (await c.read("virtual-machine-interface", given.uuid)).virtual_machine_interface_mac_addresses,
      {
        mac_address: ["02:aa:bb:cc:dd:ee"],
      },
    );
    await c.delete("virtual-machine-interface", uuid);
    await c.delete("virtual-machine-interface", given.uuid);
  });

  it("creates idempotently with createOrRead", async () => {
    const body = { fq_name: [...project, "cor-vn"], parent_type: "project" };
    const first = await c.createOrRead("virtual-network", body);
    assert.equal(first.created, true);
    const second = await c.createOrRead("virtual-network", body);
    assert.equal(second.created, false);
    assert.equal(second.obj.uuid, first.obj.uuid);
    assert.ok(Array.isArray(second.obj.routing_instances), "the existing object is read in full");
    // A uuid clash under another name is not "it exists": the 409 comes back.
    await rejectsWith(
      c.createOrRead("virtual-network", { ...body, fq_name: [...project, "cor-vn2"], uuid: first.obj.uuid }),
      409,
      /already exists with fq_name/,
    );
    await c.delete("virtual-network", first.obj.uuid);
  });
});

describe("VNC emulator: kube-manager's pod sequence", () => {
  let s: RunningVncServer;
  let c: VncClient;
  let done: () => Promise<void>;
  before(
    async () => ({ s, c, done } = await withServer({ computes: [{ name: "node-1", ip: "198.18.0.11" }] })),
  );
  after(() => done());

  it("creates VM, VMI, IIP and the VR→VM ref, refuses out-of-order deletes, then deletes in order", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("pods", { subnet: { ip_prefix: "10.32.0.0", ip_prefix_len: 12 } }),
    );
    const vnRead = await c.read("virtual-network", vn.uuid);
    const subnetUuid = String(
      (refs(vnRead, "network_ipam_refs")[0]!.attr!.ipam_subnets as Record<string, unknown>[])[0]!.subnet_uuid,
    );
    const podUid = "0b4d9c8e-1f2a-4b3c-8d4e-5f6a7b8c9d0e";
    const vmName = "k8s__default__web-0";
    const vm = await c.create("virtual-machine", {
      uuid: podUid,
      fq_name: [vmName],
      server_type: "container",
      annotations: { key_value_pair: [{ key: "namespace", value: "default" }] },
    });
    assert.equal(vm.uuid, podUid);
    const vmiUuid = "6c1f0e2d-3a4b-4c5d-9e6f-7a8b9c0d1e2f";
    await c.create("virtual-machine-interface", {
      uuid: vmiUuid,
      fq_name: [...project, `web-0__${vmiUuid}`],
      parent_type: "project",
      virtual_network_refs: [{ to: vn.fq_name }],
      virtual_machine_refs: [{ to: [vmName] }],
      annotations: {
        key_value_pair: [
          { key: "index", value: "0/1" },
          { key: "network", value: "default" },
        ],
      },
      port_security_enabled: true,
    });
    const iip = await c.create("instance-ip", {
      fq_name: [`web-0__${vmiUuid}`],
      subnet_uuid: subnetUuid,
      virtual_network_refs: [{ uuid: vn.uuid }],
      virtual_machine_interface_refs: [{ uuid: vmiUuid }],
    });
    assert.equal(iip.instance_ip_address, "10.47.255.252", "top-down, below gateway .254 and DNS .253");
    assert.equal(iip.subnet_uuid, subnetUuid);
    const vr = await c.readByFqName("virtual-router", ["default-global-system-config", "node-1"]);
    await c.refUpdate("virtual-router", vr.uuid, "virtual-machine", podUid, "ADD");

    // What the agent reads to plumb the port.
    const vmi = await c.read("virtual-machine-interface", vmiUuid);
    assert.deepEqual(
      refs(vmi, "virtual_machine_refs").map((r) => r.to),
      [[vmName]],
    );
    assert.deepEqual(
      refs(vmi, "instance_ip_back_refs").map((r) => r.uuid),
      [iip.uuid],
    );
    assert.deepEqual(vmi.annotations, {
      key_value_pair: [
        { key: "index", value: "0/1" },
        { key: "network", value: "default" },
      ],
    });
    const iipRead = await c.read("instance-ip", iip.uuid);
    assert.equal(iipRead.instance_ip_address, "10.47.255.252");
    // Real TF fills instance_ip_subnet only for flat-subnet (IPAM) allocations, not for a VN's own subnets.
    assert.equal(iipRead.instance_ip_subnet, undefined);
    const vmRead = await c.read("virtual-machine", podUid);
    assert.deepEqual(
      refs(vmRead, "virtual_router_back_refs").map((r) => r.uuid),
      [vr.uuid],
    );

    // Out of order: everything still referred is refused with the real texts.
    const vmErr = await rejectsWith(
      c.delete("virtual-machine", podUid),
      409,
      /^Delete when resource still referred: \[/,
    );
    assert.ok(vmErr.body.includes(`'${s.url}/virtual-machine-interface/${vmiUuid}'`), vmErr.body);
    assert.ok(vmErr.body.includes(`'${s.url}/virtual-router/${vr.uuid}'`), vmErr.body);
    await rejectsWith(
      c.delete("virtual-machine-interface", vmiUuid),
      409,
      `Delete when resource still referred: ['${s.url}/instance-ip/${iip.uuid}']`,
    );
    await rejectsWith(c.delete("virtual-network", vn.uuid), 409, /^Delete when resource still referred: /);

    // In order.
    await c.refUpdate("virtual-router", vr.uuid, "virtual-machine", podUid, "DELETE");
    await c.delete("instance-ip", iip.uuid);
    await c.delete("virtual-machine-interface", vmiUuid);
    await c.delete("virtual-machine", podUid);
    await c.delete("virtual-network", vn.uuid);
    assert.equal(s.store.get(vn.uuid), undefined);
  });
});

describe("VNC emulator: address management", () => {
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ c, done } = await withServer()));
  after(() => done());

  const iip = (name: string, vn: VncObject, extra: Record<string, unknown> = {}): Promise<VncObject> =>
    c.create("instance-ip", { fq_name: [name], virtual_network_refs: [{ uuid: vn.uuid }], ...extra });

  it("fills subnet defaults: subnet_uuid, gateway last-1, DNS last-2, DHCP on", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("am-defaults", { subnet: { ip_prefix: "10.1.0.0", ip_prefix_len: 24 } }),
    );
    const read = await c.read("virtual-network", vn.uuid);
    const sn = (refs(read, "network_ipam_refs")[0]!.attr!.ipam_subnets as Record<string, unknown>[])[0]!;
    assert.match(String(sn.subnet_uuid), /^[0-9a-f-]{36}$/);
    assert.equal(sn.default_gateway, "10.1.0.254");
    assert.equal(sn.dns_server_address, "10.1.0.253");
    assert.equal(sn.enable_dhcp, true);
    assert.equal(typeof read.virtual_network_network_id, "number");
    // No auto route target in route_target_list (real TF leaves it to the user): the schema transformer's
    // route-target object hangs off the VN's routing-instance instead.
    assert.equal(read.route_target_list, undefined);
    const rtName = `target:64512:${8_000_000 + Number(read.virtual_network_network_id)}`;
    const rt = await c.readByFqName("route-target", [rtName]);
    const ri = await c.readByFqName("routing-instance", [...project, "am-defaults", "am-defaults"]);
    assert.deepEqual(
      refs(ri, "route_target_refs").map((r) => [r.uuid, r.to, r.attr]),
      [[rt.uuid, [rtName], { import_export: null }]],
    );

    // A PUT that repeats the subnet keeps its uuid.
    await c.update("virtual-network", vn.uuid, {
      network_ipam_refs: [
        { to: ipam, attr: { ipam_subnets: [{ subnet: { ip_prefix: "10.1.0.0", ip_prefix_len: 24 } }] } },
      ],
    });
    const again = await c.read("virtual-network", vn.uuid);
    assert.equal(
      (refs(again, "network_ipam_refs")[0]!.attr!.ipam_subnets as Record<string, unknown>[])[0]!.subnet_uuid,
      sn.subnet_uuid,
    );
    await c.delete("virtual-network", vn.uuid);
    // The auto route target goes with the VN's routing-instance.
    assert.equal(await c.fqNameToId("route-target", [rtName]).catch(() => undefined), undefined);
  });

  it("allocates top-down in a /29 until it is exhausted, and frees on delete", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("am-29", { subnet: { ip_prefix: "10.2.0.0", ip_prefix_len: 29 } }),
    );
    // .0 network, .7 broadcast, .6 gateway, .5 DNS: four addresses fit.
    const got: VncObject[] = [];
    for (let i = 0; i < 4; i++) got.push(await iip(`am-29-${i}`, vn));
    assert.deepEqual(
      got.map((o) => o.instance_ip_address),
      ["10.2.0.4", "10.2.0.3", "10.2.0.2", "10.2.0.1"],
    );
    await rejectsWith(
      iip("am-29-x", vn),
      400,
      "Virtual-Network(['default-domain', 'k8s-default', 'am-29']) has exhausted subnet(['10.2.0.0/29'])",
    );
    await c.delete("instance-ip", got[1]!.uuid);
    assert.equal((await iip("am-29-again", vn)).instance_ip_address, "10.2.0.3");
  });

  it("checks requested addresses: in use, reserved, outside the subnets", async () => {
    const vn = await c.create(
      "virtual-network",
      vnBody("am-req", { subnet: { ip_prefix: "10.3.0.0", ip_prefix_len: 24 } }),
    );
    const a = await iip("am-req-a", vn, { instance_ip_address: "10.3.0.10" });
    assert.equal(a.instance_ip_address, "10.3.0.10");
    await rejectsWith(
      iip("am-req-b", vn, { instance_ip_address: "10.3.0.10" }),
      409,
      "IP address already in use",
    );
    await rejectsWith(
      iip("am-req-c", vn, { instance_ip_address: "10.3.0.253" }),
      409,
      "IP address already in use",
    );
    // An address outside every subnet: no subnet was tried, so TF says the (empty) list is exhausted.
    await rejectsWith(
      iip("am-req-d", vn, { instance_ip_address: "10.4.0.1" }),
      400,
      "Virtual-Network(['default-domain', 'k8s-default', 'am-req']) has exhausted subnet([])",
    );
    // The gateway address may be taken, but not by a VM's port.
    assert.equal(
      (await iip("am-req-gw", vn, { instance_ip_address: "10.3.0.254" })).instance_ip_address,
      "10.3.0.254",
    );
    await rejectsWith(
      c.update("instance-ip", a.uuid, { instance_ip_address: "10.3.0.11" }),
      400,
      "Instance IP Address can not be changed",
    );
  });

  it("allocates bottom-up with addr_from_start, inside allocation_pools, and from the subnet asked for", async () => {
    const vn = await c.create("virtual-network", {
      fq_name: [...project, "am-multi"],
      network_ipam_refs: [
        {
          to: ipam,
          attr: {
            ipam_subnets: [
              { subnet: { ip_prefix: "10.5.0.0", ip_prefix_len: 24 }, addr_from_start: true },
              {
                subnet: { ip_prefix: "10.6.0.0", ip_prefix_len: 24 },
                allocation_pools: [{ start: "10.6.0.100", end: "10.6.0.101" }],
              },
            ],
          },
        },
      ],
    });
    const read = await c.read("virtual-network", vn.uuid);
    const [s5, s6] = refs(read, "network_ipam_refs")[0]!.attr!.ipam_subnets as Record<string, unknown>[];
    assert.equal(s5!.default_gateway, "10.5.0.1");
    assert.equal(s5!.dns_server_address, "10.5.0.2");
    assert.equal((await iip("am-multi-1", vn)).instance_ip_address, "10.5.0.3");
    const in6 = await iip("am-multi-2", vn, { subnet_uuid: s6!.subnet_uuid });
    assert.equal(in6.instance_ip_address, "10.6.0.101");
    assert.equal(in6.subnet_uuid, s6!.subnet_uuid);
    assert.equal(
      (await iip("am-multi-3", vn, { subnet_uuid: s6!.subnet_uuid })).instance_ip_address,
      "10.6.0.100",
    );
    await rejectsWith(
      iip("am-multi-4", vn, { subnet_uuid: s6!.subnet_uuid }),
      400,
      /has exhausted subnet\(\['10.6.0.0\/24'\]\)/,
    );
  });

  it("allocates floating-ips from the pool's VN, sharing the space with instance-ips", async () => {
    const vn = await c.create("virtual-network", {
      ...vnBody("am-public", { subnet: { ip_prefix: "203.0.113.0", ip_prefix_len: 29 } }),
      router_external: true,
    });
    const pool = await c.create("floating-ip-pool", { fq_name: [...vn.fq_name, "public-pool"] });
    const fip = await c.create("floating-ip", {
      fq_name: [...pool.fq_name, "fip-1"],
      parent_type: "floating-ip-pool",
    });
    assert.equal(fip.floating_ip_address, "203.0.113.4");
    const fipRead = await c.read("floating-ip", fip.uuid);
    assert.deepEqual(
      refs(fipRead, "project_refs").map((r) => r.to),
      [project],
    );
    assert.equal((await iip("am-public-iip", vn)).instance_ip_address, "203.0.113.3");
    await rejectsWith(
      c.create("floating-ip", { fq_name: [...pool.fq_name, "fip-2"], floating_ip_address: "203.0.113.3" }),
      409,
      "IP address already in use",
    );
    await rejectsWith(c.delete("floating-ip-pool", pool.uuid), 409, /^Delete when children still present/);
  });

  it("allocates from a flat-subnet IPAM shared by several VNs", async () => {
    const podIpam = await c.create("network-ipam", {
      fq_name: [...project, "k8s-pod-ipam"],
      ipam_subnet_method: "flat-subnet",
      ipam_subnets: { subnets: [{ subnet: { ip_prefix: "10.10.0.0", ip_prefix_len: 29 } }] },
    });
    const flat = (name: string): Promise<VncObject> =>
      c.create("virtual-network", {
        fq_name: [...project, name],
        network_ipam_refs: [{ uuid: podIpam.uuid, attr: { ipam_subnets: [] } }],
      });
    const [a, b] = [await flat("flat-a"), await flat("flat-b")];
    assert.equal((await iip("flat-1", a)).instance_ip_address, "10.10.0.4");
    assert.equal((await iip("flat-2", b)).instance_ip_address, "10.10.0.3");
    const ipamRead = await c.read("network-ipam", podIpam.uuid);
    const sn = (ipamRead.ipam_subnets as { subnets: Record<string, unknown>[] }).subnets[0]!;
    assert.equal(sn.default_gateway, "10.10.0.6");
    assert.match(String(sn.subnet_uuid), /^[0-9a-f-]{36}$/);
  });
});

describe("VNC emulator: state file", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "vnc-state-"))));
  after(() => rm(dir, { recursive: true, force: true }));

  it("keeps objects, refs and the VN id counter across a restart", async () => {
    const stateFile = join(dir, "sub", "vnc.json");
    const computes = [{ name: "node-1", ip: "198.18.0.11" }];
    let { s, c, done } = await withServer({ stateFile, computes });
    const vn = await c.create(
      "virtual-network",
      vnBody("keep", { subnet: { ip_prefix: "10.20.0.0", ip_prefix_len: 24 } }),
    );
    const id = Number((await c.read("virtual-network", vn.uuid)).virtual_network_network_id);
    const gone = await c.create("virtual-network", { fq_name: [...project, "gone"] });
    await c.delete("virtual-network", gone.uuid);
    const first = await c.create("instance-ip", {
      fq_name: ["keep-iip"],
      virtual_network_refs: [{ uuid: vn.uuid }],
    });
    const seeded = s.store.size;
    await done();
    const onDisk = JSON.parse(await readFile(stateFile, "utf8")) as { version: number; objects: unknown[] };
    assert.equal(onDisk.version, 1);
    assert.equal(onDisk.objects.length, seeded);

    ({ s, c, done } = await withServer({ stateFile, computes }));
    try {
      assert.equal(s.store.size, seeded, "seeding is idempotent");
      const read = await c.read("virtual-network", vn.uuid);
      assert.equal(read.virtual_network_network_id, id);
      assert.deepEqual(
        refs(read, "instance_ip_back_refs").map((r) => r.uuid),
        [first.uuid],
      );
      const next = await c.create("virtual-network", { fq_name: [...project, "after-restart"] });
      assert.equal(
        (await c.read("virtual-network", next.uuid)).virtual_network_network_id,
        id + 2,
        "ids are never reused",
      );
      const second = await c.create("instance-ip", {
        fq_name: ["keep-iip-2"],
        virtual_network_refs: [{ uuid: vn.uuid }],
      });
      assert.notEqual(second.instance_ip_address, first.instance_ip_address, "held addresses stay held");
    } finally {
      await done();
    }
  });

  it("writes once per event-loop turn, atomically", async () => {
    const path = join(dir, "coalesce.json");
    const file = new StateFile(path, (err) => assert.fail(err));
    let snapshots = 0;
    const snap = (): StoreSnapshot => ({ version: 1, counters: { n: ++snapshots }, objects: [] });
    for (let i = 0; i < 100; i++) file.schedule(snap);
    await new Promise((r) => setImmediate(r));
    file.schedule(snap);
    await file.flush();
    assert.equal(snapshots, 2, "one write for the first turn's 100 changes, one for the next");
    assert.deepEqual((await file.load())?.counters, { n: 2 });
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith(".tmp")),
      [],
      "no temporary file left",
    );
  });

  it("refuses a corrupt state file with a message naming it", async () => {
    const stateFile = join(dir, "corrupt.json");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(stateFile, "{not json");
    await assert.rejects(startVncServer({ port: 0, stateFile }), (err: Error) =>
      err.message.includes(stateFile),
    );
  });
});

describe("VNC emulator: keystone mode", () => {
  const creds = { username: "admin", password: "contrail123" };

  it("refuses calls without a token, serves them after auth, and re-authenticates after a restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vnc-ks-"));
    const stateFile = join(dir, "vnc.json");
    let s = await startVncServer({ port: 0, keystone: creds, stateFile });
    const port = s.port;
    try {
      const anon = new VncClient({ url: s.url, retries: 0 });
      await rejectsWith(anon.homepage(), 401, "Authentication required");
      anon.close();

      const wrong = new VncClient({
        url: s.url,
        retries: 0,
        auth: { kind: "keystone", url: s.url, username: "admin", password: "nope" },
      });
      const err = await rejectsWith(wrong.homepage(), 401, /requires authentication/);
      assert.match(err.message, /^VNC POST http:\/\/127\.0\.0\.1:\d+\/v3\/auth\/tokens: 401/);
      wrong.close();

      const c = new VncClient({
        url: s.url,
        auth: { kind: "keystone", ...creds, url: s.url, project: "admin" },
      });
      const vn = await c.create("virtual-network", { fq_name: [...project, "ks-vn"] });

      // The server forgets its tokens on restart; the client gets a new one on the 401.
      await s.stop();
      s = await startVncServer({ port, keystone: creds, stateFile });
      assert.equal((await c.read("virtual-network", vn.uuid)).uuid, vn.uuid);
      s.keystone!.revokeAll();
      assert.equal((await c.list("virtual-network", { obj_uuids: [vn.uuid] })).length, 1);
      c.close();
    } finally {
      await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
