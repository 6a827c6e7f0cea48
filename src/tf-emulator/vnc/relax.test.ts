// /ref-relax-for-delete as the real server honours it: a relaxed ref no longer blocks deleting its target,
// is removed when the target goes, and the mark survives a restart with a state file.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { project, raw, refs, rejectsWith, withServer } from "./testkit.js";

describe("VNC emulator: ref-relax-for-delete", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "vnc-relax-"))));
  after(() => rm(dir, { recursive: true, force: true }));

  it("lets the target be deleted past relaxed refs only, and removes them", async () => {
    const stateFile = join(dir, "vnc.json");
    let { s, c, done } = await withServer({ stateFile });
    const policy = await c.create("network-policy", { fq_name: [...project, "relax-pol"] });
    const seq = { sequence: { major: 0, minor: 0 } };
    const vnA = await c.create("virtual-network", {
      fq_name: [...project, "relax-a"],
      network_policy_refs: [{ uuid: policy.uuid, attr: seq }],
    });
    const vnB = await c.create("virtual-network", {
      fq_name: [...project, "relax-b"],
      network_policy_refs: [{ uuid: policy.uuid, attr: seq }],
    });
    const bad = await raw(`${s.url}/ref-relax-for-delete`, "POST", { uuid: vnA.uuid });
    assert.equal(bad.status, 400);
    assert.equal(bad.text, `Bad Request: Both uuid and ref-uuid should be specified: ${vnA.uuid}, None.`);
    const ok = await raw(`${s.url}/ref-relax-for-delete`, "POST", {
      uuid: vnA.uuid,
      "ref-uuid": policy.uuid,
    });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { uuid: vnA.uuid });

    // The mark is kept across a restart.
    await done();
    ({ s, c, done } = await withServer({ stateFile }));
    // Only the non-relaxed referrer blocks.
    await rejectsWith(
      c.delete("network-policy", policy.uuid),
      409,
      `Delete when resource still referred: ['${s.url}/virtual-network/${vnB.uuid}']`,
    );
    await c.update("virtual-network", vnB.uuid, { network_policy_refs: [] });
    await c.delete("network-policy", policy.uuid);
    assert.deepEqual(refs(await c.read("virtual-network", vnA.uuid), "network_policy_refs"), []);
    await c.delete("virtual-network", vnA.uuid);
    await c.delete("virtual-network", vnB.uuid);
    await done();
  });
});
