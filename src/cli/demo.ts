// `nsm demo`: the project's main job. Until the two-cloud demo lands (issue 6) it proves the registry end to
// end: start a registry, register a NetworkService and an endpoint, find it by service, watch it expire or
// be removed, and print what happened with timings.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { startRegistry } from "../components/registry.js";
import { RegistryClient } from "../registry/client.js";
import { table } from "./format.js";

export function demoCommand(program: Command): void {
  program
    .command("demo")
    .description("start a registry and show a register/find/watch/unregister round trip")
    .action(runDemo);
}

async function runDemo(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "nsm-demo-"));
  const started = performance.now();
  const registry = await startRegistry({
    name: "demo-registry",
    listenOn: [`unix://${join(dir, "registry.sock")}`],
    store: "sqlite",
    dbPath: join(dir, "registry.db"),
    expirePeriodMs: 60_000,
  });
  const client = new RegistryClient(registry.urls[0]!);
  const rows: string[][] = [];
  const step = async (name: string, fn: () => Promise<string>): Promise<void> => {
    const t = performance.now();
    try {
      const detail = await fn();
      rows.push([name, "ok", `${(performance.now() - t).toFixed(1)} ms`, detail]);
    } catch (err) {
      rows.push([
        name,
        "FAILED",
        `${(performance.now() - t).toFixed(1)} ms`,
        err instanceof Error ? err.message : String(err),
      ]);
      throw err;
    }
  };
  try {
    await step("register NetworkService", async () => {
      const ns = await client.registerService({
        name: "icmp-responder",
        payload: "",
        matches: [],
        pathIds: [],
      });
      return `icmp-responder, payload defaulted to ${ns.payload}`;
    });
    const watch = client.watchEndpoints({ networkServiceNames: ["icmp-responder"] });
    const events: string[] = [];
    const watching = (async () => {
      try {
        for await (const ev of watch)
          events.push(`${ev.deleted ? "deleted" : "updated"} ${ev.networkServiceEndpoint!.name}`);
      } catch {
        /* cancelled below */
      }
    })();
    await step("register endpoint", async () => {
      const nse = await client.registerEndpoint({
        name: "nse-1",
        networkServiceNames: ["icmp-responder"],
        networkServiceLabels: { "icmp-responder": { labels: { app: "icmp" } } },
        url: "tcp://198.18.0.1:5001",
        expirationTime: undefined,
        initialRegistrationTime: undefined,
        pathIds: [],
      });
      return `nse-1 expires in ${Math.round(nse.expirationTime!.seconds - Date.now() / 1000)} s`;
    });
    await step("find endpoints of icmp-responder", async () => {
      const found = await client.findEndpoints({ networkServiceNames: ["icmp-responder"] });
      if (found.length !== 1) throw new Error(`expected 1 endpoint, found ${found.length}`);
      return found.map((n) => `${n.name} at ${n.url}`).join(", ");
    });
    await step("unregister endpoint", async () => {
      await client.unregisterEndpoint({ name: "nse-1" });
      const left = await client.findEndpoints({ networkServiceNames: ["icmp-responder"] });
      if (left.length !== 0) throw new Error(`endpoint still registered`);
      return "gone from Find";
    });
    await step("watch saw", async () => {
      for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      watch.cancel();
      await watching;
      if (events.length < 2) throw new Error(`watch saw only: ${events.join(", ") || "nothing"}`);
      return events.join(", ");
    });
  } finally {
    client.close();
    await registry.stop();
    rmSync(dir, { recursive: true, force: true });
    console.log(table(["STEP", "RESULT", "TIME", "DETAIL"], rows));
    console.log(`\ntotal ${(performance.now() - started).toFixed(0)} ms`);
  }
}
