// TF's official Python client (contrail-api-client R2005 from PyPI, installed by scripts/install.sh into
// .cache/vnc-python) against `nsm tf-emulator config`: a bulk list of 30 uuids, IPv6 instance-ips, schema
// validation, property collections, the user-agent key/value store, relaxed refs and TF's error texts,
// each as the client reads them. Everything runs inside a namespace of this test.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { inNs, Netns } from "../helpers/netns.js";
import { startComponent, tempDir, type Component } from "../helpers/proc.js";

const python = new URL("../../.cache/vnc-python/bin/python", import.meta.url).pathname;
const script = new URL("../fixtures/vnc_client_check.py", import.meta.url).pathname;

describe("TF's official Python client against the config API emulator", { timeout: 120_000 }, () => {
  const net = new Netns("nsmpy");
  const dir = tempDir("nsm-vncpy-");
  let ns: string;
  let vnc: Component;

  before(async () => {
    assert.ok(existsSync(python), `${python} missing: run scripts/install.sh`);
    ns = net.add("api");
    vnc = await startComponent(
      ["tf-emulator", "config", "--listen", "127.0.0.1:8082", "--state-file", `${dir.path}/vnc.json`],
      "tf config API emulator ready",
      {},
      20_000,
      ns,
    );
  });
  after(async () => {
    await vnc?.stop();
    net.cleanup();
    dir.remove();
  });

  it("works as the client expects, and refuses what real TF refuses with its texts", () => {
    const r = inNs(ns, [python, script, "127.0.0.1", "8082"], 90_000);
    assert.equal(r.code, 0, r.out);
    const got = JSON.parse(r.out.trim().split("\n").at(-1)!) as Record<string, unknown>;
    assert.equal(got.bulk_listed, 30, "list-bulk-collection");
    assert.equal(got.route_target_list, true, "no automatic route target in route_target_list");
    assert.match(
      String(got.bad_enum),
      /^Bad property in create: Error validating property virtual_network_properties value .* forwarding_mode: value must be one of \['l2_l3', 'l2', 'l3'\]$/,
    );
    assert.equal(got.address_v4, "100.64.0.252");
    assert.equal(got.address_v6, "2001:db8:100:0:ffff:ffff:ffff:fffc");
    assert.deepEqual(got.annotations, [[{ key: "k", value: "v" }, "k"]]);
    assert.equal(got.kv, "pyvalue");
    assert.equal(got.relaxed_delete, true);
    assert.match(String(got.missing_id), /Unknown id: [0-9a-f-]{36}$/);
  });
});
