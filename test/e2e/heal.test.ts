// Healing end to end (issue 7): with a probe pinging across a live connection every 10 ms, each scenario breaks
// one component (kill -9 and restart) or the data path, and the client must heal: restores with the data path
// intact lose nothing; a broken data path is reselected; a deleted client namespace is cleaned up.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { HealMesh } from "../helpers/healmesh.js";
import { links } from "../helpers/netns.js";
import { eventually } from "../helpers/proc.js";
import { clientNetnsDeleted, registryRestart, scenarios } from "../helpers/healscenarios.js";

const mesh = new HealMesh();

describe("heal e2e", { timeout: 300_000 }, () => {
  before(() => mesh.start());
  after(async () => {
    await mesh.stop();
    assert.deepEqual(mesh.net.leftovers(), []);
  });

  for (const s of scenarios) {
    it(s.name, async () => {
      const r = await s.run(mesh);
      const why = JSON.stringify(r);
      // The kind of heal the scenario calls for happened, as the client's counters tell it.
      assert.equal(r.kind, s.expected, why);
      assert.ok(r.controlPlaneMs !== undefined, why);
      // Traffic flows at the end, on the addresses the connection has now.
      assert.ok(r.flowsAtEnd, why);
      if (r.kind === "restore")
        assert.equal(r.lost, 0, `restore with the data path intact lost probes: ${why}`);
      else assert.ok(r.outageMs < 3000, `reselect outage ${r.outageMs} ms: ${why}`);
      // Moving away from a dead endpoint, or to the one the changed service selects.
      if (["remote_nse_pod_deleted", "service_changed"].includes(s.name)) assert.notEqual(r.to, r.from, why);
    });
  }

  it("registry_restart", async () => {
    const r = await registryRestart(mesh);
    const why = JSON.stringify(r);
    // Live connections need no heal at all, lose nothing, and new ones work again.
    assert.equal(r.kind, "none", why);
    assert.equal(r.lost, 0, why);
    assert.ok(r.flowsAtEnd, why);
  });

  it("client_netns_deleted", async () => {
    const r = await clientNetnsDeleted(mesh);
    assert.doesNotMatch(r.detail, /still present/);
  });

  it("leaves nothing behind: no endpoint-side interface once every client closed", async () => {
    for (const ns of [mesh.e1, mesh.e2, mesh.e2b]) {
      await eventually(
        () => links(ns).length === 0,
        10_000,
        `no interface left in ${ns}: ${links(ns).join(" ")}`,
      );
    }
  });
});
