// Property and ref-attr validation with the real server's texts (api_server.py _validate_props_in_request,
// _validate_simple_type, _validate_complex_type, _validate_refs_in_request), through raw HTTP bodies as the
// official client sends them.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VncClient } from "../../forwarder/tf/vnc.js";
import type { RunningVncServer } from "./server.js";
import { project, raw, rejectsWith, withServer } from "./testkit.js";

describe("VNC emulator: property validation", () => {
  let s: RunningVncServer;
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ s, c, done } = await withServer()));
  after(() => done());

  const vn = (name: string, extra: Record<string, unknown>): Promise<unknown> =>
    c.create("virtual-network", { fq_name: [...project, name], parent_type: "project", ...extra });
  const create = "Bad property in create: ";

  it("checks simple properties: booleans, strings, enums", async () => {
    await rejectsWith(
      vn("p-shared", { is_shared: "yes" }),
      400,
      `${create}Error validating property is_shared: true/false expected instead of yes`,
    );
    await rejectsWith(
      vn("p-mode", { address_allocation_mode: "bogus" }),
      400,
      `${create}Error validating property address_allocation_mode: value must be one of ` +
        "['user-defined-subnet-preferred', 'user-defined-subnet-only', 'flat-subnet-preferred', 'flat-subnet-only']",
    );
    await rejectsWith(
      vn("p-name", { display_name: 5 }),
      400,
      `${create}Error validating property display_name: string value expected instead of 5`,
    );
    await rejectsWith(
      c.create("virtual-machine", { fq_name: ["p-vm"], server_type: true }),
      400,
      `${create}Error validating property server_type: string value expected instead of True`,
    );
  });

  it("checks complex properties field by field, with Python's printing of the value", async () => {
    await rejectsWith(
      vn("p-fwd", { virtual_network_properties: { forwarding_mode: "bogus" } }),
      400,
      `${create}Error validating property virtual_network_properties value {'forwarding_mode': 'bogus'} ` +
        "forwarding_mode: value must be one of ['l2_l3', 'l2', 'l3']",
    );
    await rejectsWith(
      vn("p-vni", { virtual_network_properties: { vxlan_network_identifier: "lots" } }),
      400,
      `${create}Error validating property virtual_network_properties value {'vxlan_network_identifier': 'lots'} ` +
        "vxlan_network_identifier: integer value expected instead of lots",
    );
    await rejectsWith(
      vn("p-vni-range", { virtual_network_properties: { vxlan_network_identifier: 16777216 } }),
      400,
      `${create}Error validating property virtual_network_properties value {'vxlan_network_identifier': 16777216} ` +
        "vxlan_network_identifier: value must be between 1 and 16777215",
    );
    await rejectsWith(
      vn("p-field", { virtual_network_properties: { rpf: "enable", bogus: null } }),
      400,
      `${create}Error validating property virtual_network_properties value {'rpf': 'enable', 'bogus': None} ` +
        "class <class 'vnc_api.gen.resource_xsd.VirtualNetworkType'> does not have field bogus",
    );
    await rejectsWith(
      vn("p-ann", { annotations: "foo" }),
      400,
      `${create}Error in property annotations type <class 'vnc_api.gen.resource_xsd.KeyValuePairs'> value of foo `,
    );
    await rejectsWith(
      vn("p-ann-list", { annotations: { key_value_pair: { key: "a", value: "b" } } }),
      400,
      `${create}Error validating property annotations value {'key_value_pair': {'key': 'a', 'value': 'b'}} ` +
        "Field key_value_pair must be a list. Received value: {'key': 'a', 'value': 'b'}",
    );
  });

  it("coerces integers with int(), skips falsy values, drops unknown keys", async () => {
    const ok = (await vn("p-ok", {
      virtual_network_properties: { vxlan_network_identifier: "5000", forwarding_mode: "" },
      is_shared: 0,
      not_a_property: "dropped",
    })) as { uuid: string };
    const read = await c.read("virtual-network", ok.uuid);
    assert.deepEqual(read.virtual_network_properties, {
      vxlan_network_identifier: 5000,
      forwarding_mode: "",
    });
    assert.equal(read.not_a_property, undefined);
    await c.delete("virtual-network", ok.uuid);
  });

  it("says http_put on an update, and checks ref attrs", async () => {
    const made = (await vn("p-put", {})) as { uuid: string };
    const put = await raw(`${s.url}/virtual-network/${made.uuid}`, "PUT", {
      "virtual-network": { is_shared: "no" },
    });
    assert.equal(put.status, 400);
    assert.equal(
      put.text,
      "Bad property in http_put: Error validating property is_shared: true/false expected instead of no",
    );
    await rejectsWith(
      c.create("logical-router", {
        fq_name: [...project, "p-lr"],
        virtual_network_refs: [{ uuid: made.uuid, attr: { logical_router_virtual_network_type: "Gateway" } }],
      }),
      400,
      "Bad reference in create: Error validating reference virtual_network_refs value " +
        `{'uuid': '${made.uuid}', 'attr': {'logical_router_virtual_network_type': 'Gateway'}} ` +
        "logical_router_virtual_network_type: value must be one of ['ExternalGateway', 'InternalVirtualNetwork', 'NAPTSourcePool']",
    );
    await c.delete("virtual-network", made.uuid);
  });
});
