// The four endpoints the official Python client (vnc_api) uses beyond CRUD: the homepage links it looks
// them up by, /list-bulk-collection, /useragent-kv, /prop-collection-get and /prop-collection-update.
// Each request is the one vnc_api.py sends; status and body are the real server's.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { raw, vnBody, withServer } from "./testkit.js";
import type { VncClient } from "../../forwarder/tf/vnc.js";
import type { RunningVncServer } from "./server.js";

type Json = Record<string, unknown>;
const missing = "0b4d9c8e-1f2a-4b3c-8d4e-000000000000";

describe("VNC emulator: actions of the Python client", () => {
  let s: RunningVncServer;
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ s, c, done } = await withServer()));
  after(async () => done());

  const post = (path: string, body: unknown) => raw(`${s.url}${path}`, "POST", body);
  const get = (path: string) => raw(`${s.url}${path}`, "GET");
  const readObj = async (type: string, uuid: string): Promise<Json> =>
    ((await get(`/${type}/${uuid}`)).json() as Record<string, Json>)[type]!;

  it("homepage: the action links vnc_api looks up by name", async () => {
    const home = (await get("/")).json() as { links: { link: Json }[] };
    const byName = new Map(
      home.links.filter((l) => l.link.rel === "action").map((l) => [l.link.name, l.link]),
    );
    assert.deepEqual(byName.get("list-bulk-collection"), {
      rel: "action",
      href: `${s.url}/list-bulk-collection`,
      name: "list-bulk-collection",
      method: "POST",
    });
    assert.equal(byName.get("useragent-keyvalue")?.href, `${s.url}/useragent-kv`);
    assert.equal(byName.get("prop-collection-get")?.method, "GET");
    assert.equal(byName.get("prop-collection-update")?.href, `${s.url}/prop-collection-update`);
  });

  it("list-bulk-collection answers as GET /<type>s for 30 uuids (vnc_api switches above 25)", async () => {
    const uuids: string[] = [];
    for (let i = 0; i < 30; i++) uuids.push((await c.create("virtual-network", vnBody(`bulk-${i}`))).uuid);
    const csv = uuids.join(",");
    const bulk = await post("/list-bulk-collection", {
      obj_uuids: csv,
      detail: false,
      count: false,
      shared: false,
      type: "virtual-network",
    });
    assert.equal(bulk.status, 200, bulk.text);
    const viaGet = await get(`/virtual-networks?obj_uuids=${csv}&detail=False&count=False&shared=False`);
    assert.deepEqual(bulk.json(), viaGet.json());
    const list = (bulk.json() as { "virtual-networks": Json[] })["virtual-networks"];
    assert.equal(list.length, 30);
    assert.deepEqual(new Set(list.map((e) => e.uuid)), new Set(uuids));

    const counted = await post("/list-bulk-collection", {
      obj_uuids: csv,
      count: true,
      type: "virtual_network",
    });
    assert.deepEqual(counted.json(), { "virtual-networks": { count: 30 } });
    const detailed = await post("/list-bulk-collection", {
      obj_uuids: csv,
      detail: true,
      exclude_hrefs: true,
      type: "virtual-network",
    });
    const first = (detailed.json() as { "virtual-networks": { "virtual-network": Json }[] })[
      "virtual-networks"
    ][0]!;
    assert.ok(first["virtual-network"].network_ipam_refs, "detail gives the whole object");
    assert.equal(first["virtual-network"].href, undefined, "exclude_hrefs");
  });

  it("list-bulk-collection errors as TF", async () => {
    const none = await post("/list-bulk-collection", { obj_uuids: missing });
    assert.deepEqual([none.status, none.text], [404, "Resource type 'None' not found"]);
    const bad = await post("/list-bulk-collection", { type: "no-such-thing" });
    assert.deepEqual([bad.status, bad.text], [404, "Resource type 'no-such-thing' not found"]);
    // The real server splits the string: a JSON list fails there (500).
    const list = await post("/list-bulk-collection", { type: "virtual-network", obj_uuids: [missing] });
    assert.equal(list.status, 500);
    assert.match(list.text, /'list' object has no attribute 'split'/);
  });

  it("useragent-kv: STORE, RETRIEVE (one, several, all), DELETE and TF's errors", async () => {
    const kv = (body: Json) => post("/useragent-kv", body);
    const stored = await kv({ operation: "STORE", key: "port-1", value: "bound" });
    assert.deepEqual([stored.status, stored.text], [200, ""]);
    await kv({ operation: "STORE", key: "port-2", value: "free" });
    assert.deepEqual((await kv({ operation: "RETRIEVE", key: "port-1" })).json(), { value: "bound" });
    assert.deepEqual((await kv({ operation: "RETRIEVE", key: ["port-2", "nope", "port-1"] })).json(), {
      value: ["free", "bound"],
    });
    assert.deepEqual((await kv({ operation: "RETRIEVE", key: null })).json(), {
      value: [
        { key: "port-1", value: "bound" },
        { key: "port-2", value: "free" },
      ],
    });
    const gone = await kv({ operation: "RETRIEVE", key: "nope" });
    assert.deepEqual([gone.status, gone.text], [404, "Unknown User-Agent key nope"]);
    assert.equal((await kv({ operation: "DELETE", key: "port-2" })).status, 200);
    assert.equal((await kv({ operation: "DELETE", key: "port-2" })).status, 200, "a missing key is no error");
    assert.equal((await kv({ operation: "RETRIEVE", key: "port-2" })).status, 404);
    const op = await kv({ operation: "FETCH", key: "port-1" });
    assert.deepEqual([op.status, op.text], [404, "Invalid Operation FETCH"]);
    const noOp = await kv({ key: "port-1" });
    assert.deepEqual(
      [noOp.status, noOp.text],
      [400, "Error: Key/value store API needs 'operation' parameter"],
    );
    const noKey = await kv({ operation: "RETRIEVE" });
    assert.deepEqual([noKey.status, noKey.text], [400, "Error: Key/value store API needs 'key' parameter"]);
  });

  it("prop-collection-get: [[element, position], ...] per field, one position, TF's errors", async () => {
    const vm = await c.create("virtual-machine", {
      fq_name: ["pc-vm"],
      annotations: {
        key_value_pair: [
          { key: "zone", value: "b" },
          { key: "app", value: "web" },
        ],
      },
    });
    const vn = await c.create("virtual-network", {
      ...vnBody("pc-vn"),
      virtual_network_fat_flow_protocols: {
        fat_flow_protocol: [
          { protocol: "tcp", port: 80 },
          { protocol: "udp", port: 53 },
        ],
      },
    });
    const all = await get(`/prop-collection-get?uuid=${vm.uuid}&fields=annotations`);
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(all.json(), {
      annotations: [
        [{ key: "app", value: "web" }, "app"],
        [{ key: "zone", value: "b" }, "zone"],
      ],
    });
    // A map is read in key order, by a plain GET as well.
    assert.deepEqual((await readObj("virtual-machine", vm.uuid)).annotations, {
      key_value_pair: [
        { key: "app", value: "web" },
        { key: "zone", value: "b" },
      ],
    });
    const one = await get(`/prop-collection-get?uuid=${vm.uuid}&fields=annotations&position=zone`);
    assert.deepEqual(one.json(), { annotations: [[{ key: "zone", value: "b" }, "zone"]] });
    const list = await get(
      `/prop-collection-get?uuid=${vn.uuid}&fields=virtual_network_fat_flow_protocols,annotations`,
    );
    assert.deepEqual(list.json(), {
      virtual_network_fat_flow_protocols: [
        [{ protocol: "tcp", port: 80 }, "0"],
        [{ protocol: "udp", port: 53 }, "1"],
      ],
      annotations: [],
    });

    const unknown = await get(`/prop-collection-get?uuid=${missing}&fields=annotations`);
    assert.deepEqual([unknown.status, unknown.text], [404, `Object Not Found: ${missing}`]);
    const plain = await get(`/prop-collection-get?uuid=${vm.uuid}&fields=annotations,display_name`);
    assert.deepEqual(
      [plain.status, plain.text],
      [400, 'display_name neither "ListProperty" nor "MapProperty"'],
    );
    const noFields = await get(`/prop-collection-get?uuid=${vm.uuid}`);
    assert.deepEqual(
      [noFields.status, noFields.text],
      [400, "Object fields needed for property collection get"],
    );
    const noUuid = await get(`/prop-collection-get?fields=annotations`);
    assert.deepEqual([noUuid.status, noUuid.text], [400, "Object uuid needed for property collection get"]);
  });

  it("prop-collection-update: map set/delete as prop_map_set_element / prop_map_delete_element send them", async () => {
    const vmi = await c.create("virtual-machine-interface", {
      fq_name: ["default-domain", "k8s-default", "pc-vmi"],
      parent_type: "project",
      virtual_network_refs: [{ to: ["default-domain", "k8s-default", "pc-vn"] }],
    });
    const before = (await readObj("virtual-machine-interface", vmi.uuid)).id_perms as Json;
    await new Promise((r) => setTimeout(r, 5));
    const set = await post("/prop-collection-update", {
      uuid: vmi.uuid,
      updates: [
        {
          field: "virtual_machine_interface_bindings",
          operation: "set",
          value: { key: "host_id", value: "node-1" },
          position: "host_id",
        },
      ],
    });
    assert.deepEqual([set.status, set.text], [200, ""]);
    await post("/prop-collection-update", {
      uuid: vmi.uuid,
      updates: [
        {
          field: "virtual_machine_interface_bindings",
          operation: "set",
          value: { key: "vif_type", value: "vrouter" },
        },
        {
          field: "virtual_machine_interface_bindings",
          operation: "set",
          value: { key: "host_id", value: "node-2" },
        },
      ],
    });
    let read = await readObj("virtual-machine-interface", vmi.uuid);
    assert.deepEqual(read.virtual_machine_interface_bindings, {
      key_value_pair: [
        { key: "host_id", value: "node-2" },
        { key: "vif_type", value: "vrouter" },
      ],
    });
    assert.notEqual((read.id_perms as Json).last_modified, before.last_modified, "last_modified moves");
    assert.equal((read.id_perms as Json).created, before.created);

    const del = {
      field: "virtual_machine_interface_bindings",
      operation: "delete",
      value: null,
      position: "host_id",
    };
    assert.equal((await post("/prop-collection-update", { uuid: vmi.uuid, updates: [del] })).status, 200);
    assert.equal(
      (await post("/prop-collection-update", { uuid: vmi.uuid, updates: [del] })).status,
      200,
      "missing key",
    );
    read = await readObj("virtual-machine-interface", vmi.uuid);
    assert.deepEqual(read.virtual_machine_interface_bindings, {
      key_value_pair: [{ key: "vif_type", value: "vrouter" }],
    });
    await post("/prop-collection-update", {
      uuid: vmi.uuid,
      updates: [{ ...del, position: "vif_type" }],
    });
    read = await readObj("virtual-machine-interface", vmi.uuid);
    assert.equal(read.virtual_machine_interface_bindings, undefined, "an empty map is not shown");
  });

  it("prop-collection-update: list add/modify/delete by position, read in position order", async () => {
    const vn = await c.create("virtual-network", vnBody("pc-list"));
    const field = "virtual_network_fat_flow_protocols";
    const update = (...updates: Json[]) => post("/prop-collection-update", { uuid: vn.uuid, updates });
    const ok = await update(
      { field, operation: "add", value: { protocol: "tcp", port: 80 }, position: "0" },
      { field, operation: "add", value: { protocol: "tcp", port: 443 }, position: "2" },
      { field, operation: "add", value: { protocol: "udp", port: 53 }, position: "10" },
    );
    assert.deepEqual([ok.status, ok.text], [200, ""]);
    const positions = async () =>
      (
        (await get(`/prop-collection-get?uuid=${vn.uuid}&fields=${field}`)).json() as Record<
          string,
          [Json, string][]
        >
      )[field]!;
    // Positions are strings and sort as such: "10" before "2".
    assert.deepEqual(
      (await positions()).map(([v, p]) => [p, v.port]),
      [
        ["0", 80],
        ["10", 53],
        ["2", 443],
      ],
    );
    await update({ field, operation: "modify", value: { protocol: "tcp", port: 8080 }, position: "2" });
    await update({ field, operation: "delete", value: null, position: "0" });
    // vnc_api leaves the position out of an add without one: the server picks a uuid.
    await update({ field, operation: "add", value: { protocol: "sctp", port: 9 } });
    const now = await positions();
    assert.equal(now.length, 3);
    assert.deepEqual(now.find(([, p]) => p === "2")?.[0], { protocol: "tcp", port: 8080 });
    assert.match(now.find(([v]) => v.protocol === "sctp")![1], /^[0-9a-f-]{36}$/);
    const read = await readObj("virtual-network", vn.uuid);
    assert.deepEqual(
      read[field],
      { fat_flow_protocol: now.map(([v]) => v) },
      "a plain GET shows the elements in the same order",
    );
  });

  it("prop-collection-update: TF's checks and texts", async () => {
    const vm = await c.create("virtual-machine", { fq_name: ["pc-errors"] });
    const update = (...updates: Json[]) => post("/prop-collection-update", { uuid: vm.uuid, updates });
    const noUuid = await post("/prop-collection-update", { updates: [] });
    assert.deepEqual([noUuid.status, noUuid.text], [400, "Error: prop_collection_update needs obj_uuid"]);
    const unknown = await post("/prop-collection-update", { uuid: missing, updates: [] });
    assert.deepEqual([unknown.status, unknown.text], [404, `Object Not Found: ${missing}`]);
    const plain = await update({ field: "display_name", operation: "set", value: "x" });
    assert.deepEqual(
      [plain.status, plain.text],
      [400, 'display_name neither "ListProperty" nor "MapProperty"'],
    );
    const op = await update({
      field: "annotations",
      operation: "add",
      value: { key: "a", value: "1" },
      position: "a",
    });
    assert.deepEqual(
      [op.status, op.text],
      [
        400,
        'Unsupported operation add in request {"field": "annotations", "operation": "add", "value": {"key": "a", "value": "1"}, "position": "a"}',
      ],
    );
    const field = await update({
      field: "annotations",
      operation: "set",
      value: { key: "a", colour: "red" },
    });
    assert.deepEqual(
      [field.status, field.text],
      [400, "class <class 'vnc_api.gen.resource_xsd.KeyValuePair'> does not have field colour"],
    );
    // Nothing of a refused request is applied, even the updates before the bad one.
    const mixed = await update(
      { field: "annotations", operation: "set", value: { key: "a", value: "1" } },
      { field: "annotations", operation: "frob", value: null },
    );
    assert.equal(mixed.status, 400);
    assert.equal((await readObj("virtual-machine", vm.uuid)).annotations, undefined);
  });

  it("useragent-kv values survive a restart with the state file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vnc-kv-"));
    try {
      const stateFile = join(dir, "state.json");
      const first = await withServer({ stateFile });
      await raw(`${first.s.url}/useragent-kv`, "POST", { operation: "STORE", key: "k", value: "v" });
      await first.done();
      const second = await withServer({ stateFile });
      const got = await raw(`${second.s.url}/useragent-kv`, "POST", { operation: "RETRIEVE", key: "k" });
      await second.done();
      assert.deepEqual(got.json(), { value: "v" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
