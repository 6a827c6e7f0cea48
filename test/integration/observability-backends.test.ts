// The observability test backends, each proven with real traffic on 127.0.0.1: a private Prometheus scrapes a
// prom-client registry, a private Jaeger receives OTLP/HTTP spans from the OpenTelemetry SDK and returns them from
// its query API, and headless Chromium reads a page a local server serves. Each test fails when its backend is
// missing or broken (the helpers name the script that provides it).
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";

import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Counter, Registry } from "prom-client";

import { launchChromium } from "../helpers/chromium.js";
import { startJaeger } from "../helpers/jaeger.js";
import { startPrometheus } from "../helpers/prometheus.js";

/** An HTTP server on 127.0.0.1 at a free port; resolves with its base URL and a close function. */
async function serve(
  handler: Parameters<typeof createServer>[1],
): Promise<{ url: string; hostPort: string; close(): Promise<void> }> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hostPort: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("observability backends", () => {
  it(
    "Prometheus scrapes a prom-client registry and answers instant queries",
    { timeout: 30_000 },
    async (t) => {
      const registry = new Registry();
      const requests = new Counter({
        name: "nsm_test_requests_total",
        help: "Requests the test made.",
        labelNames: ["path"],
        registers: [registry],
      });
      requests.inc({ path: "/a" }, 3);
      const target = await serve((_req, res) => {
        void registry.metrics().then((body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        });
      });
      t.after(() => target.close());

      const prom = await startPrometheus({ targets: [target.hostPort], scrapeIntervalMs: 200 });
      t.after(() => prom.stop());
      assert.match(prom.url, /^http:\/\/127\.0\.0\.1:\d+$/);

      const first = await prom.waitFor("nsm_test_requests_total", (r) => r.length === 1);
      assert.equal(first[0]?.value, 3);
      assert.equal(first[0]?.metric.path, "/a");
      assert.equal(first[0]?.metric.instance, target.hostPort);
      assert.equal(first[0]?.metric.job, "test");
      assert.equal(await prom.targetsUp(), true);

      // A later increment shows up in a later scrape: the value comes from the target, not from a cache.
      requests.inc({ path: "/a" }, 4);
      const later = await prom.waitFor('nsm_test_requests_total{path="/a"}', (r) => r[0]?.value === 7);
      assert.equal(later.length, 1);

      // A scalar expression and PromQL's own error text.
      assert.deepEqual(await prom.query("1 + 1"), [{ metric: {}, value: 2 }]);
      await assert.rejects(prom.query("sum("), /bad_data.*parse error/);

      await prom.stop();
      await prom.stop(); // idempotent
      await assert.rejects(prom.query("up"), /fetch failed/);
    },
  );

  it(
    "Jaeger receives OTLP/HTTP spans and returns the trace with its parent reference",
    { timeout: 30_000 },
    async (t) => {
      const jaeger = await startJaeger();
      t.after(() => jaeger.stop());
      for (const u of [jaeger.otlpHttpUrl, jaeger.otlpGrpcUrl, jaeger.queryUrl]) {
        assert.match(u, /^http:\/\/127\.0\.0\.1:\d+$/);
      }

      const service = `nsm-ts-test-${process.pid}-${Date.now()}`;
      const provider = new BasicTracerProvider({
        resource: resourceFromAttributes({ "service.name": service }),
        spanProcessors: [
          new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${jaeger.otlpHttpUrl}/v1/traces` })),
        ],
      });
      t.after(() => provider.shutdown());
      const tracer = provider.getTracer("observability-backends.test");

      const parent = tracer.startSpan("request", { attributes: { "nsm.connection_id": "conn-1" } });
      const child = tracer.startSpan("forward", {}, trace.setSpan(ROOT_CONTEXT, parent));
      child.end();
      parent.end();
      await provider.forceFlush();
      const traceId = parent.spanContext().traceId;
      const parentId = parent.spanContext().spanId;

      const traces = await jaeger.waitForTraces(
        service,
        (ts) => ts.length === 1 && ts[0]?.spans.length === 2,
      );
      const got = traces[0]!;
      assert.equal(got.traceID, traceId);
      const byName = new Map(got.spans.map((s) => [s.operationName, s]));
      const gotParent = byName.get("request");
      const gotChild = byName.get("forward");
      assert.ok(gotParent && gotChild, `spans: ${got.spans.map((s) => s.operationName).join(", ")}`);
      assert.equal(gotParent.spanID, parentId);
      assert.deepEqual(gotParent.references, []);
      assert.deepEqual(gotChild.references, [{ refType: "CHILD_OF", traceID: traceId, spanID: parentId }]);
      assert.ok(gotParent.tags.some((tag) => tag.key === "nsm.connection_id" && tag.value === "conn-1"));
      assert.equal(got.processes[gotChild.processID]?.serviceName, service);
      assert.ok((await jaeger.services()).includes(service));
      assert.equal((await jaeger.trace(traceId)).spans.length, 2);

      await jaeger.stop();
      await jaeger.stop(); // idempotent
      await assert.rejects(jaeger.services(), /fetch failed/);
    },
  );

  it("headless Chromium renders a local page and reads an element's text", { timeout: 30_000 }, async (t) => {
    const page = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      // The text is set by a script, so reading it proves the page was rendered, not just fetched.
      res.end(
        `<!doctype html><title>nsm-ts</title><p id="status">static</p>` +
          `<script>document.getElementById("status").textContent = "rendered " + (6 * 7);</script>`,
      );
    });
    t.after(() => page.close());

    const browser = await launchChromium();
    t.after(() => browser.close());
    const tab = await browser.newPage();
    await tab.goto(page.url);
    assert.equal(await tab.title(), "nsm-ts");
    assert.equal(await tab.textContent("#status"), "rendered 42");
    await browser.close();
    assert.equal(browser.isConnected(), false);
  });
});
