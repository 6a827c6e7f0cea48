// `nsm demo` end to end (issue 6): the main job passes every scenario and leaves nothing behind; `--keep`
// leaves it up (with its dashboard serving every connection) and refuses a second run; `nsm demo down` removes
// it, also after the demo was killed.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Graph } from "../../src/dashboard/types.js";
import { eventually, runNsm, sleep, tempDir } from "../helpers/proc.js";

const dir = tempDir("nsm-demo-test-");
const env = { NSM_DEMO_DIR: `${dir.path}/demo` };
const demoNamespaces = (): string => {
  try {
    return readdirSync("/var/run/netns")
      .filter((n) => /^nsmd[0-9a-f]{4}-/.test(n))
      .join(" ");
  } catch {
    return "";
  }
};
const demoProcesses = (): number[] =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return /(^|\0)NSM_DEMO=nsmd/.test(readFileSync(`/proc/${d}/environ`, "utf8"));
      } catch {
        return false;
      }
    })
    .map(Number);

function assertNothingLeft(): void {
  assert.equal(demoNamespaces(), "", "demo namespaces left");
  assert.deepEqual(demoProcesses(), [], "demo processes left");
  assert.ok(!existsSync(env.NSM_DEMO_DIR), "demo directory left");
}

/** --keep's dashboard: its URL is printed, and it serves every client's connection, up, from 127.0.0.1. */
async function assertDashboard(stdout: string): Promise<void> {
  const url = /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(stdout)?.[1];
  assert.ok(url, `the dashboard's URL is printed:\n${stdout}`);
  const clients = ["local", "remote", "snat", "fip", "public", "stretch-a", "stretch-b"];
  let g: Graph | undefined;
  await eventually(
    async () => {
      g = (await (await fetch(`${url}api/graph`)).json()) as Graph;
      return (
        g.registries.length === 2 &&
        g.registries.every((r) => r.status === "up") &&
        clients.every((c) => g!.connections.some((x) => x.id === `nsc-${c}-0` && x.state === "up"))
      );
    },
    15_000,
    "both registries and every demo connection up in the dashboard",
  ).catch((err: Error) =>
    assert.fail(
      `${err.message}: ${JSON.stringify({ registries: g?.registries, connections: g?.connections })}`,
    ),
  );
  const conn = (c: string) => g!.connections.find((x) => x.id === `nsc-${c}-0`)!;
  assert.equal(conn("remote").mechanism, "veth+vxlan", "pod → pod across nodes");
  assert.equal(conn("snat").mechanism, "tf-vn", "pod → internet through the TF VN");
  // From the registries: the nodes' forwarders and the icmp-responder, each on its node.
  assert.deepEqual(
    g!.forwarders.filter((f) => f.node === "a1").map((f) => f.name),
    ["fwd-kernel-a1", "fwd-tf-a1"],
  );
  assert.equal(g!.endpoints.find((e) => e.name === "icmp-responder-a2")?.node, "a2");
  for (const n of ["a1", "a2", "b1"])
    assert.ok(
      g!.nodes.some((x) => x.name === n),
      `node ${n}`,
    );
  assert.ok(
    g!.nsmgrs.every((m) => m.status === "up"),
    JSON.stringify(g!.nsmgrs.map((m) => [m.name, m.status])),
  );
}

describe("nsm demo", { timeout: 240_000 }, () => {
  after(async () => {
    await runNsm(["demo", "down"], env);
    dir.remove();
  });

  it("passes every scenario within its time and leaves nothing behind", async () => {
    const r = await runNsm(["demo"], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const s of [
      "pod → pod, same node",
      "pod → pod, across nodes",
      "pod → internet",
      "pod → internet \\(IPv6\\)",
      "internet → pod",
      "cloud A ↔ cloud B",
      "cloud A ↔ cloud B \\(IPv6\\)",
    ]) {
      assert.match(r.stdout, new RegExp(`${s} .*ok: `), `${s}:\n${r.stdout}`);
    }
    // The internet sees the logical router's SNAT instance: an address of the gateway VN `public`.
    assert.match(r.stdout, /pod → internet .*you are 198\.51\.100\.\d+\)/, r.stdout);
    const m = /all 7 scenarios passed in ([\d.]+) s/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assertNothingLeft();
  });

  it("--keep leaves it running, refuses a second run, and demo down removes everything", async () => {
    const r = await runNsm(["demo", "--keep"], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /nsm demo down/);
    assert.notEqual(demoNamespaces(), "");
    await assertDashboard(r.stdout);
    const again = await runNsm(["demo"], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a demo is already running .*nsm demo down/);
    const down = await runNsm(["demo", "down"], env);
    assert.equal(down.code, 0, down.stderr);
    assertNothingLeft();
  });

  it("demo down cleans up after a demo that was killed half-way", async () => {
    const p = spawn(process.execPath, [new URL("../../bin/nsm.js", import.meta.url).pathname, "demo"], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!/every node up/.test(out) && Date.now() < deadline) await sleep(50);
    p.kill("SIGKILL");
    await new Promise((r) => p.once("exit", r));
    assert.notEqual(demoNamespaces(), "", "the killed demo left its network");
    const down = await runNsm(["demo", "down"], env);
    assert.equal(down.code, 0, down.stderr);
    assertNothingLeft();
  });
});
