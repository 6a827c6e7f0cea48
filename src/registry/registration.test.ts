// A registration survives its registry restarting without its store: the broken watch makes it register again
// at once (not at the next refresh), and the hook (an endpoint's services) runs before it does.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createSecurity } from "../components/security.js";
import { startRegistry, type RunningRegistry } from "../components/registry.js";
import { rootLogger } from "../core/log.js";
import { RegistryClient, endpoint } from "./client.js";
import { Registration } from "./registration.js";

const dir = mkdtempSync(join(tmpdir(), "nsm-registration-"));
const url = `unix://${join(dir, "registry.sock")}`;
const start = (): Promise<RunningRegistry> =>
  startRegistry({
    name: "registry-test",
    listenOn: [url],
    store: "memory",
    expirePeriodMs: 60_000,
    security: createSecurity({ name: "registry-test", insecure: true }),
  });

describe("Registration", { timeout: 20_000 }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("registers again as soon as a restarted registry lost it", async () => {
    let registry = await start();
    const client = new RegistryClient(url);
    let hooks = 0;
    const reg = new Registration(
      client,
      endpoint({ name: "nse-a", networkServiceNames: ["svc"], url: "tcp://198.18.0.5:5001" }),
      rootLogger,
      undefined,
      () => {
        hooks++;
        return Promise.resolve();
      },
    );
    await reg.start();
    try {
      assert.equal(hooks, 0);
      await registry.stop();
      registry = await start();
      const t0 = Date.now();
      let found = 0;
      while (Date.now() - t0 < 5000 && found === 0) {
        found = (await client.findEndpoints({ name: "nse-a" }, { timeoutMs: 1000 }).catch(() => [])).length;
        if (found === 0) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(found, 1, "re-registered within 5 s (the refresh would come after 40 s)");
      assert.ok(hooks >= 1, "the hook ran before registering again");
    } finally {
      await reg.stop();
      client.close();
      await registry.stop();
    }
  });
});
