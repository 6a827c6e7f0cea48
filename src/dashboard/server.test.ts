// The dashboard's HTTP side: the page (self-contained, its script and style pinned by the CSP), the model as
// JSON, the model as Server-Sent Events (the current one on connect, then each published one), and nothing else.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { get, type IncomingMessage } from "node:http";
import { after, before, describe, it } from "node:test";
import { Script } from "node:vm";
import { pageScript, pageStyle } from "./page.js";
import { startDashboardServer, type DashboardServer } from "./server.js";
import type { Graph } from "./types.js";

const graph = (version: number): Graph => ({
  version,
  generatedAt: new Date(0).toISOString(),
  registries: [],
  nodes: [],
  nsmgrs: [],
  forwarders: [],
  endpoints: [],
  clients: [],
  services: [],
  connections: [],
});

describe("dashboard server", () => {
  let server: DashboardServer;
  let current = graph(1);

  before(async () => {
    server = await startDashboardServer({ host: "127.0.0.1", port: 0 }, () => current);
  });
  after(() => server.stop());

  it("listens where asked, a free port for 0", () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.notEqual(server.port, 0);
  });

  it("serves one self-contained page whose inline script and style alone the CSP admits", async () => {
    const r = await fetch(server.url);
    assert.equal(r.status, 200);
    const csp = r.headers.get("content-security-policy") ?? "";
    const hash = (t: string): string => `'sha256-${createHash("sha256").update(t).digest("base64")}'`;
    assert.match(csp, /default-src 'none'/);
    assert.ok(csp.includes(`script-src ${hash(pageScript)}`), csp);
    assert.ok(csp.includes(`style-src ${hash(pageStyle)}`), csp);
    const html = await r.text();
    assert.ok(html.includes(`<script>${pageScript}</script>`));
    assert.doesNotMatch(html, /\b(src|href)="(https?:)?\/\//, "nothing fetched from elsewhere");
    assert.doesNotMatch(pageScript, /innerHTML|outerHTML|insertAdjacentHTML/, "text and attributes only");
    assert.doesNotThrow(() => new Script(pageScript, { filename: "page.js" }), "the page's script parses");
  });

  it("GET /api/graph: the current model", async () => {
    const r = await fetch(`${server.url}api/graph`);
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.deepEqual(await r.json(), current);
  });

  it("GET /api/events: the current model at once, then each published one", async () => {
    const frames: string[] = [];
    const res = await new Promise<IncomingMessage>((resolve) => get(`${server.url}api/events`, resolve));
    assert.equal(res.headers["content-type"], "text/event-stream");
    let buf = "";
    res.on("data", (c: Buffer) => {
      buf += c.toString();
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        frames.push(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    });
    const until = async (n: number): Promise<void> => {
      const end = Date.now() + 5000;
      while (frames.length < n) {
        if (Date.now() > end) throw new Error(`only ${frames.length} frames`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await until(1);
    current = graph(2);
    server.publish(current);
    await until(2);
    res.destroy();
    const versions = frames.map((f) => {
      const [event, data] = f.split("\n");
      assert.equal(event, "event: graph");
      return (JSON.parse(data!.replace(/^data: /, "")) as Graph).version;
    });
    assert.deepEqual(versions, [1, 2]);
  });

  it("nothing else: 404 for other paths, 405 for other methods", async () => {
    assert.equal((await fetch(`${server.url}other`)).status, 404);
    assert.equal((await fetch(`${server.url}api/graph`, { method: "POST" })).status, 405);
  });
});
