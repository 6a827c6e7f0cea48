// The endpoint forms NSM_OPENTELEMETRYENDPOINT takes, the flag named on a bad one, and spans costing nothing
// but the call itself while tracing is off (the e2e test, test/e2e/tracing.test.ts, exports to Jaeger).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata } from "@grpc/grpc-js";
import { CallContext } from "../../core/context.js";
import { rootLogger } from "../../core/log.js";
import { clientSpan, serverSpan } from "./spans.js";
import { activeTracing, parseTracingEndpoint, startTracing } from "./tracing.js";

describe("tracing", () => {
  it("takes upstream's host:port as OTLP/gRPC and http(s) URLs as OTLP/HTTP", () => {
    assert.deepEqual(parseTracingEndpoint("otel-collector.observability:4317"), {
      kind: "grpc",
      url: "http://otel-collector.observability:4317",
    });
    assert.deepEqual(parseTracingEndpoint("[::1]:4317"), { kind: "grpc", url: "http://[::1]:4317" });
    assert.deepEqual(parseTracingEndpoint("http://127.0.0.1:4318"), {
      kind: "http",
      url: "http://127.0.0.1:4318/v1/traces",
    });
    assert.deepEqual(parseTracingEndpoint("https://c.example:443/otlp/v1/traces"), {
      kind: "http",
      url: "https://c.example/otlp/v1/traces",
    });
  });

  it("refuses anything else, naming the flag, before loading anything", async () => {
    for (const bad of ["collector", "collector:0", "collector:99999", "unix:///x", "http://[bad"])
      assert.throws(() => parseTracingEndpoint(bad), /^Error: --opentelemetry-endpoint: /, bad);
    await assert.rejects(startTracing({ endpoint: "nope", serviceName: "t" }), /--opentelemetry-endpoint/);
    assert.equal(activeTracing(), undefined);
  });

  it("off: spans only run the call and touch no metadata", async () => {
    const ctx = CallContext.background(rootLogger);
    const md = new Metadata();
    assert.equal(await serverSpan(ctx, "s/M", undefined, () => Promise.resolve(1)), 1);
    assert.equal(await clientSpan(ctx, "s/M", "unix:///x", undefined, md, () => Promise.resolve(2)), 2);
    await assert.rejects(
      serverSpan(ctx, "s/M", undefined, () => Promise.reject(new Error("boom"))),
      /boom/,
    );
    assert.deepEqual(md.getMap(), {});
  });
});
