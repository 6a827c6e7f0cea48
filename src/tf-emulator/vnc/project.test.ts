// Project create as resources/project.py does it: a default application-policy-set child the project
// refers to, which goes with the project on delete.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { VncClient } from "../../forwarder/tf/vnc.js";
import { refs, withServer } from "./testkit.js";

describe("VNC emulator: project", () => {
  let c: VncClient;
  let done: () => Promise<void>;
  before(async () => ({ c, done } = await withServer()));
  after(() => done());

  it("creates the default application-policy-set and deletes it with the project", async () => {
    const fq = ["default-domain", "aps-project"];
    const p = await c.create("project", { fq_name: fq, parent_type: "domain" });
    const aps = await c.readByFqName("application-policy-set", [...fq, "default-application-policy-set"]);
    assert.equal(aps.parent_type, "project");
    assert.equal(aps.parent_uuid, p.uuid);
    assert.equal(aps.all_applications, true);
    assert.equal(aps.display_name, "default-application-policy-set");
    const read = await c.read("project", p.uuid);
    assert.deepEqual(
      refs(read, "application_policy_set_refs").map((r) => [r.uuid, r.attr]),
      [[aps.uuid, null]],
    );
    assert.deepEqual(
      (read.application_policy_sets as { uuid: string }[]).map((x) => x.uuid),
      [aps.uuid],
    );
    await c.delete("project", p.uuid);
    assert.equal(await c.deleteIfExists("application-policy-set", aps.uuid), false);
  });
});
