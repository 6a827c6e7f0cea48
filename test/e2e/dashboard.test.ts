// `nsm dashboard` end to end (issue 16): a two-node mesh of real processes with kernel forwarders in this run's
// network namespaces, a client whose connection crosses both nodes (veth, then VXLAN), and the dashboard in the
// root namespace watching the registry and both nsmgrs over their unix sockets (a second, node-local
// connection fills the picture). Headless Chromium opens the
// page and checks what it draws; the client-side forwarder is killed (-9) and the drawn connection turns
// unhealthy, then healthy again once the restarted forwarder let the client heal. A screenshot of the healthy
// mesh goes to docs/images/dashboard.png.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { Connection } from "../../src/api/connection.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { ping } from "../../src/dataplane/index.js";
import type { Graph } from "../../src/dashboard/types.js";
import { launchChromium } from "../helpers/chromium.js";
import { Netns } from "../helpers/netns.js";
import { eventually, runNsm, startComponent, tempDir, type Component } from "../helpers/proc.js";

const screenshot = new URL("../../docs/images/dashboard.png", import.meta.url).pathname;
const traceUi = "http://127.0.0.1:16686";
const host = (cidr: string | undefined): string => (cidr ?? "").split("/")[0]!;

const net = new Netns("nsdb");
const dir = tempDir("nsm-dashboard-");
const procs = new Map<string, Component>();
const sock = (n: string): string => `unix://${join(dir.path, `${n}.sock`)}`;
let node1 = "";
let node2 = "";
let pod = "";
let endpointPods: Record<string, string> = {};
let client: NsmClient | undefined;
let conn: Connection;
let dashboard: Component;
let browser: Browser | undefined;
let page: Page;
/** Script errors on the page: none is allowed. */
const pageErrors: string[] = [];

/** Each component's command, so a killed one can be started again the same way. */
function spec(name: string): { args: string[]; ready: string; netns: string; env?: Record<string, string> } {
  const n = name.endsWith("2") ? 2 : 1;
  const netns = n === 1 ? node1 : node2;
  const ip = `198.18.0.${n}`;
  switch (name) {
    case "registry":
      return {
        args: ["registry", "--store", "memory", "--listen-on", `tcp://${ip}:5002,${sock("registry")}`],
        ready: "registry serving",
        netns,
      };
    case "nsmgr-1":
    case "nsmgr-2":
      return {
        args: [
          "nsmgr",
          "--name",
          name,
          "--listen-on",
          `${sock(name)},tcp://${ip}:5001`,
          "--registry-url",
          "tcp://198.18.0.1:5002",
        ],
        ready: "nsmgr ready",
        netns,
        env: { NODE_NAME: `node${n}` },
      };
    case "fwd-1":
    case "fwd-2":
      return {
        args: [
          "forwarder",
          "kernel",
          "--name",
          name,
          "--listen-on",
          sock(name),
          "--connect-to",
          sock(`nsmgr-${n}`),
          "--tunnel-ip",
          ip,
        ],
        ready: "forwarder ready",
        netns,
      };
    default: {
      const local = name === "nse-local";
      return {
        args: [
          "nse",
          "icmp-responder",
          "--name",
          name,
          "--listen-on",
          sock(name),
          "--connect-to",
          sock(local ? "nsmgr-1" : "nsmgr-2"),
          "--services",
          local ? "local-svc" : "remote-svc",
          "--cidr",
          local ? "169.254.20.0/24" : "169.254.21.0/24",
          "--netns",
          net.path(endpointPods[name]!),
        ],
        ready: "endpoint ready",
        netns: local ? node1 : node2,
      };
    }
  }
}

async function run(name: string): Promise<void> {
  const s = spec(name);
  procs.set(name, await startComponent(s.args, s.ready, s.env ?? {}, { netns: s.netns }));
}

const connection = (p: Page) => p.locator('[data-testid="connection-nsc-dash-0"]');
const stateOf = async (p: Page): Promise<string> =>
  (await connection(p).count()) === 0 ? "gone" : ((await connection(p).getAttribute("data-state")) ?? "");

async function pings(): Promise<boolean> {
  const c = client!.connections()[0];
  const src = host(c?.context?.ipContext?.srcIpAddrs[0]);
  const dst = host(c?.context?.ipContext?.dstIpAddrs[0]);
  if (!src || !dst) return false;
  const r = await ping(net.path(pod), { src, dst, count: 3, timeoutMs: 1000, stopAfterReplies: 1 });
  return r.received > 0;
}

describe("nsm dashboard", { timeout: 180_000 }, () => {
  before(async () => {
    node1 = net.add("node1");
    node2 = net.add("node2");
    pod = net.add("c1");
    endpointPods = { "nse-local": net.add("e1"), "nse-remote": net.add("e2") };
    net.wire(node1, "198.18.0.1/24", node2, "198.18.0.2/24");
    await run("registry");
    await Promise.all([run("nsmgr-1"), run("nsmgr-2")]);
    await Promise.all(["fwd-1", "fwd-2", "nse-local", "nse-remote"].map(run));
    // The dashboard's name is the identity the test mesh's nsmgrs let see every connection.
    dashboard = await startComponent(
      [
        "dashboard",
        "--name",
        "test-operator",
        "--registry-url",
        sock("registry"),
        "--nsmgr-url",
        `nsmgr-1=${sock("nsmgr-1")},nsmgr-2=${sock("nsmgr-2")}`,
        "--listen-on",
        "127.0.0.1:0",
        "--trace-ui-url",
        traceUi,
      ],
      "dashboard ready",
    );
    client = new NsmClient({
      name: "nsc-dash",
      nsmgrUrl: sock("nsmgr-1"),
      netnsPath: net.path(pod),
      security: createSecurity({ name: "nsc-dash", insecure: true }),
      heal: {},
    });
    conn = await client.request({ service: "remote-svc", ifname: "nsm-dash" });
    await client.request({ service: "local-svc", ifname: "nsm-local" });
    assert.ok(await pings(), "the connection carries traffic");
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (err) => pageErrors.push(err.message));
  });

  after(async () => {
    await browser?.close();
    await client?.closeAll().catch(() => undefined);
    await dashboard?.stop();
    for (const c of [...procs.values()].reverse()) await c.stop().catch(() => undefined);
    net.cleanup();
    dir.remove();
    assert.deepEqual(net.leftovers(), []);
  });

  it("serves the model: the connection keyed by its path's first segment id, seen at both nsmgrs", async () => {
    let g: Graph | undefined;
    await eventually(
      async () => {
        g = (await (await fetch(`${dashboard.urls[0]}api/graph`)).json()) as Graph;
        const c = g.connections.find((x) => x.id === "nsc-dash-0");
        return g.connections.length === 2 && c?.views.length === 2;
      },
      10_000,
      "both connections, the remote one at both nsmgrs",
    );
    const c = g!.connections.find((x) => x.id === "nsc-dash-0")!;
    assert.equal(c.id, "nsc-dash-0");
    assert.deepEqual(
      c.path.map((s) => [s.name, s.role]),
      [
        ["nsc-dash", "client"],
        ["nsmgr-1", "nsmgr"],
        ["fwd-1", "forwarder"],
        ["nsmgr-2", "nsmgr"],
        ["fwd-2", "forwarder"],
        ["nse-remote", "endpoint"],
      ],
    );
    assert.equal(c.state, "up");
    assert.equal(c.mechanism, "veth+vxlan");
    assert.equal(g!.connections.find((x) => x.id === "nsc-dash-1")!.mechanism, "veth", "the local one");
    assert.deepEqual(c.addresses.src, conn.context!.ipContext!.srcIpAddrs);
    // Both nsmgrs are watched through their unix sockets: none is left unreachable (their public URLs, in
    // the node namespaces, are covered by the given names and never dialled).
    assert.deepEqual(
      g!.nsmgrs.map((m) => [m.name, m.node, m.status, m.url]),
      [
        ["nsmgr-1", "node1", "up", sock("nsmgr-1")],
        ["nsmgr-2", "node2", "up", sock("nsmgr-2")],
      ],
    );
  });

  it("draws nodes, nsmgrs, forwarders, the endpoint and the connection; a click shows its details", async () => {
    await page.goto(dashboard.urls[0]!);
    for (const id of [
      "node-node1",
      "node-node2",
      "nsmgr-nsmgr-1",
      "nsmgr-nsmgr-2",
      "forwarder-fwd-1",
      "forwarder-fwd-2",
      "endpoint-nse-remote",
      "endpoint-nse-local",
      "client-nsc-dash",
      "connection-nsc-dash-1",
    ])
      await page.locator(`[data-testid="${id}"]`).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('[data-testid="nsmgr-nsmgr-1"]').getAttribute("data-state"), "up");
    assert.equal(
      await page.locator('[data-testid="node-node2"] [data-testid="endpoint-nse-remote"]').count(),
      1,
      "the endpoint is drawn inside its node",
    );
    await page.locator('[data-testid="connection-nsc-dash-0"][data-state="up"]').waitFor({ timeout: 10_000 });
    assert.equal(await connection(page).getAttribute("data-mechanism"), "veth+vxlan");

    // Its own piece of line: fwd-2 → nse-remote (the first pieces run beside the local connection's).
    await connection(page).locator("path.hit").nth(2).click({ force: true });
    const panel = (id: string) => page.locator(`[data-testid="panel"] [data-testid="${id}"]`);
    assert.equal(await panel("panel-title").textContent(), "nsc-dash-0");
    assert.equal(await panel("panel-state").textContent(), "up");
    assert.equal(await panel("panel-mechanism").textContent(), "veth+vxlan");
    const ip = conn.context!.ipContext!;
    assert.equal(
      await panel("panel-addresses").textContent(),
      `${ip.srcIpAddrs.join(", ")} → ${ip.dstIpAddrs.join(", ")}`,
    );
    assert.equal(await panel("leg-0").getAttribute("data-kind"), "veth");
    assert.equal(await panel("leg-1").getAttribute("data-kind"), "vxlan");
    assert.match((await panel("leg-1").textContent()) ?? "", /VNI \d+, 198\.18\.0\.1 → 198\.18\.0\.2/);
    assert.equal(await page.locator('[data-testid="panel-path"] tr').count(), 6, "six path segments");
    assert.match((await panel("segment-2").textContent()) ?? "", /fwd-1forwarder · id [0-9a-f-]{36}/);
    const tags = encodeURIComponent(JSON.stringify({ "nsm.path.id": "nsc-dash-0" }));
    assert.equal(
      await panel("trace-link").getAttribute("href"),
      `${traceUi}/search?service=nsc-dash&tags=${tags}`,
    );
  });

  it("a killed forwarder turns the connection unhealthy, and healed once it is back", async (t) => {
    // Every state the page draws for the connection, recorded in the page as it changes.
    await page.evaluate(`(() => {
      const seen = (window.__states = []);
      const record = () => {
        const e = document.querySelector('[data-testid="connection-nsc-dash-0"]');
        const s = e ? e.getAttribute("data-state") : "gone";
        if (seen[seen.length - 1] !== s) seen.push(s);
      };
      record();
      new MutationObserver(record).observe(document.getElementById("mesh"), { subtree: true, childList: true, attributes: true });
    })()`);
    await procs.get("fwd-1")!.kill();
    await eventually(async () => (await stateOf(page)) !== "up", 15_000, "the connection drawn not up");
    const during = await stateOf(page);
    assert.ok(["healing", "down"].includes(during), `drawn as ${during}`);
    // Unhealthy while the forwarder is away (the client cannot heal through it yet).
    await new Promise((r) => setTimeout(r, 1500));
    assert.notEqual(await stateOf(page), "up");
    await run("fwd-1");
    await page.locator('[data-testid="connection-nsc-dash-0"][data-state="up"]').waitFor({ timeout: 45_000 });
    const states = await page.evaluate<string[]>("window.__states");
    t.diagnostic(`drawn states: ${states.join(" → ")}`);
    assert.equal(states[0], "up", states.join(" → "));
    assert.ok(
      states.some((s) => s === "healing" || s === "down"),
      `an unhealthy state was drawn: ${states.join(" → ")}`,
    );
    assert.equal(states.at(-1), "up", states.join(" → "));
    await eventually(pings, 15_000, "traffic across the healed connection");
  });

  it("writes a screenshot of the healthy mesh for the docs", async () => {
    // Both connections healed (the local one went through the same forwarder).
    for (const id of ["nsc-dash-0", "nsc-dash-1"])
      await page.locator(`[data-testid="connection-${id}"][data-state="up"]`).waitFor({ timeout: 45_000 });
    // The panel shows the connection (still selected since the click), updated after the heal.
    await page.locator('[data-testid="panel-state"]').filter({ hasText: "up" }).waitFor();
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot });
    const png = readFileSync(screenshot);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG");
    assert.equal(png.readUInt32BE(16), 1280, "width");
    assert.equal(png.readUInt32BE(20), 800, "height");
  });

  it("the page raised no script error", () => {
    assert.deepEqual(pageErrors, []);
  });

  it("stops cleanly on SIGTERM", async () => {
    assert.equal(await dashboard.stop(), 0);
  });
});

describe("nsm dashboard flags", () => {
  it("refuses bad values, naming the flag", async () => {
    const bad: [string[], RegExp][] = [
      [["--listen-on", "nowhere"], /--listen-on: "nowhere" is not host:port/],
      [["--nsmgr-url", "n1=http://x"], /--nsmgr-url: "http:\/\/x" is not tcp:\/\/host:port or unix/],
      [["--registry-url", "localhost:5002"], /--registry-url: "localhost:5002" is not tcp/],
      [["--discover-nsmgrs", "maybe"], /--discover-nsmgrs: "maybe" is not true or false/],
      [["--trace-ui-url", "ftp://x"], /--trace-ui-url: "ftp:\/\/x" is not an http/],
      [["--registry-url", ""], /nothing to watch: give --registry-url and\/or --nsmgr-url/],
    ];
    await Promise.all(
      bad.map(async ([args, err]) => {
        const r = await runNsm(["dashboard", "--listen-on", "127.0.0.1:0", ...args]);
        assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, err, args.join(" "));
      }),
    );
  });
});
