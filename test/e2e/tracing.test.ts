// Traces across hops (issue 16): every component exports OTLP spans to a real Jaeger (v1.75, built from the Go
// module proxy by scripts/build-jaeger.sh) started by the test. One NSC Request across two nsmgrs is one trace
// holding a span of every hop, parent before child, each with the connection id and the service; a Close is
// a trace of its own; a failing Request marks its spans as errors. Control plane only (noop forwarders).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { startTracing, type Tracing } from "../../src/observability/tracing/tracing.js";
import { startJaeger, type Jaeger, type JaegerSpan, type JaegerTrace } from "../helpers/jaeger.js";
import { Mesh } from "../helpers/mesh.js";

const mesh = new Mesh();
let jaeger: Jaeger;
let tracing: Tracing;
let n1: { url: string };

const tag = (s: JaegerSpan, key: string): unknown => s.tags.find((t) => t.key === key)?.value;
const service = (t: JaegerTrace, s: JaegerSpan): string => t.processes[s.processID]!.serviceName;
const parentOf = (s: JaegerSpan): string | undefined =>
  s.references.find((r) => r.refType === "CHILD_OF")?.spanID;

/** The spans from the root down the parent chain (each hop has exactly one child on the way). */
function chainOf(t: JaegerTrace): JaegerSpan[] {
  const root = t.spans.find((s) => parentOf(s) === undefined);
  assert.ok(root, "the trace has a root");
  const out = [root];
  for (;;) {
    const children = t.spans.filter((s) => parentOf(s) === out.at(-1)!.spanID);
    if (children.length === 0) return out;
    assert.equal(children.length, 1, `one child of ${out.at(-1)!.operationName}`);
    out.push(children[0]!);
  }
}

describe("traces across hops (OpenTelemetry → Jaeger)", { timeout: 120_000 }, () => {
  before(async () => {
    jaeger = await startJaeger();
    // Components: OTLP/gRPC, host:port as upstream's NSM_OPENTELEMETRYENDPOINT; the NSC in this process.
    const otlp = { NSM_OPENTELEMETRYENDPOINT: jaeger.otlpGrpcUrl.replace(/^https?:\/\//, "") };
    await mesh.registry();
    n1 = await mesh.nsmgr("nsmgr-1", otlp);
    const n2 = await mesh.nsmgr("nsmgr-2", otlp);
    await Promise.all([
      mesh.forwarder("fwd-1", n1.url, "p2p=true", otlp),
      mesh.forwarder("fwd-2", n2.url, "p2p=true", otlp),
      mesh.nse("nse-remote", n2.url, "icmp-remote", "169.254.2.0/24", [], otlp),
    ]);
    tracing = await startTracing({ endpoint: jaeger.otlpHttpUrl, serviceName: "nsc", scheduledDelayMs: 100 });
  });
  after(async () => {
    await tracing?.stop();
    await mesh.down();
    await jaeger?.stop();
  });

  it("one Request across two nsmgrs is one trace: every hop's span in order, with connection id and service", async () => {
    const nsc = new NsmClient({
      name: "nsc-traced",
      nsmgrUrl: n1.url,
      security: createSecurity({ name: "nsc-traced", insecure: true }),
    });
    try {
      const conn = await nsc.request({ service: "icmp-remote", ifname: "nsm-1" });
      const hops = conn.path!.pathSegments.map((s) => s.name);
      assert.deepEqual(hops, ["nsc-traced", "nsmgr-1", "fwd-1", "nsmgr-2", "fwd-2", "nse-remote"]);

      const [trace] = await jaeger.waitForTraces(
        "nsc",
        (ts) =>
          ts.some((t) => t.spans.some((s) => s.operationName === "nsc/Request") && t.spans.length >= 11),
        20_000,
        { operation: "nsc/Request" },
      );
      const chain = chainOf(trace!);
      // The NSC's root, then for each next hop: our client span and its server span, down to the NSE.
      assert.deepEqual(
        chain.map((s) => `${service(trace!, s)} ${s.operationName}`),
        [
          "nsc nsc/Request",
          ...["nsmgr-1", "fwd-1", "nsmgr-2", "fwd-2", "nse-remote"].flatMap((hop, i, all) => [
            `${i === 0 ? "nsc" : all[i - 1]} networkservice.NetworkService/Request`,
            `${hop} networkservice.NetworkService/Request`,
          ]),
        ],
      );
      for (let i = 1; i < chain.length; i++)
        assert.ok(chain[i]!.startTime >= chain[i - 1]!.startTime, "a hop starts after its caller");
      const kinds = chain.slice(1).map((s) => tag(s, "span.kind"));
      assert.deepEqual(kinds, Array.from({ length: 5 }, () => ["client", "server"]).flat());
      for (const s of chain) {
        const where = `${service(trace!, s)} ${s.operationName} ${String(tag(s, "span.kind"))}`;
        assert.equal(tag(s, "nsm.network_service"), "icmp-remote", where);
        assert.equal(
          tag(s, "nsm.path.id"),
          conn.path!.pathSegments[0]!.id,
          `${where}: the NSC's connection id`,
        );
        assert.equal(typeof tag(s, "nsm.connection.id"), "string");
      }
      // Each hop's server span names the connection as it was asked for: its caller's path segment id.
      const servers = chain.filter((s) => tag(s, "span.kind") === "server");
      assert.deepEqual(
        servers.map((s) => tag(s, "nsm.connection.id")),
        conn.path!.pathSegments.slice(0, -1).map((s) => s.id),
      );

      await nsc.close(conn.id);
      const closes = await jaeger.waitForTraces("nsc", (ts) => ts.some((t) => t.spans.length >= 11), 20_000, {
        operation: "nsc/Close",
      });
      const close = closes.find((t) => t.spans.length >= 11)!;
      assert.notEqual(close.traceID, trace!.traceID, "Close is a trace of its own");
      assert.ok(
        close.spans.some((s) => service(close, s) === "nse-remote"),
        "the Close reached the NSE",
      );
    } finally {
      await nsc.closeAll();
    }
  });

  it("a failing Request marks its spans as errors, with the gRPC code", async () => {
    const nsc = new NsmClient({
      name: "nsc-failing",
      nsmgrUrl: n1.url,
      security: createSecurity({ name: "nsc-failing", insecure: true }),
      requestTimeoutMs: 3000,
    });
    try {
      await assert.rejects(nsc.request({ service: "no-such-service", ifname: "nsm-1" }));
      const [trace] = await jaeger.waitForTraces(
        "nsc",
        (ts) =>
          ts.some((t) =>
            t.spans.some(
              (s) =>
                service(t, s) === "nsmgr-1" && tag(s, "span.kind") === "server" && tag(s, "error") === true,
            ),
          ),
        20_000,
        { operation: "nsc/Request", tags: { "nsm.network_service": "no-such-service" } },
      );
      const atNsmgr = trace!.spans.find(
        (s) => service(trace!, s) === "nsmgr-1" && tag(s, "span.kind") === "server",
      );
      assert.ok(atNsmgr, "nsmgr-1's server span is in the trace");
      assert.equal(tag(atNsmgr, "error"), true);
      assert.equal(typeof tag(atNsmgr, "rpc.grpc.status_code"), "number");
    } finally {
      await nsc.closeAll();
    }
  });
});
