// The /metrics endpoint and its flag: text exposition with our metrics and Node's defaults, nothing served
// but /metrics, a clean stop, and bad --metrics-listen-on values refused with the flag named.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { parseListenAddress } from "./address.js";
import { metricValue } from "./read.js";
import { disableMetrics, enableMetrics, metricSet, metricsRegistry } from "./registry.js";
import { startMetricsServer, type RunningMetricsServer } from "./server.js";

describe("metrics listen address", () => {
  it("takes host:port, tcp://host:port, [v6]:port and :port", () => {
    assert.deepEqual(parseListenAddress("127.0.0.1:9090", "--metrics-listen-on"), {
      host: "127.0.0.1",
      port: 9090,
    });
    assert.deepEqual(parseListenAddress("tcp://127.0.0.1:0", "--f"), { host: "127.0.0.1", port: 0 });
    assert.deepEqual(parseListenAddress("[::1]:9090", "--f"), { host: "::1", port: 9090 });
    assert.deepEqual(parseListenAddress(":9090", "--f"), { host: "", port: 9090 });
    assert.deepEqual(parseListenAddress("localhost:1", "--f"), { host: "localhost", port: 1 });
  });

  it("refuses anything else, naming the flag", () => {
    for (const bad of ["9090", "127.0.0.1", "127.0.0.1:70000", "unix:///tmp/m.sock", "http://x:1", "a:b", ""])
      assert.throws(
        () => parseListenAddress(bad, "--metrics-listen-on"),
        (err: Error) => err.message.startsWith(`--metrics-listen-on: "${bad}"`),
        bad,
      );
  });
});

describe("metrics registry", () => {
  it("is off until enabled: metric sets are not made, reads give undefined", async () => {
    disableMetrics();
    let made = 0;
    const set = metricSet(() => ++made);
    assert.equal(set(), undefined);
    assert.equal(made, 0);
    assert.equal(await metricValue("process_resident_memory_bytes"), undefined);
    await enableMetrics();
    assert.equal(set(), 1);
    assert.equal(set(), 1, "made once per registry");
    disableMetrics();
    await enableMetrics();
    assert.equal(set(), 2, "made again for a new registry");
    disableMetrics();
  });
});

describe("metrics server", () => {
  let server: RunningMetricsServer;
  const test = metricSet(
    (registry, prom) =>
      new prom.Counter({
        name: "nsm_test_things_total",
        help: "things",
        labelNames: ["kind"] as const,
        registers: [registry],
      }),
  );

  before(async () => {
    server = await startMetricsServer({ host: "127.0.0.1", port: 0 }, await enableMetrics());
  });
  after(async () => {
    await server.stop();
    disableMetrics();
  });

  it("serves our metrics and Node's defaults in the text format", async () => {
    test()!.inc({ kind: "a" }, 3);
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^# TYPE nsm_test_things_total counter$/m);
    assert.match(text, /^nsm_test_things_total\{kind="a"\} 3$/m);
    for (const name of [
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
    ])
      assert.match(text, new RegExp(`^${name} `, "m"), name);
    assert.equal(await metricValue("nsm_test_things_total", { kind: "a" }), 3);
    assert.ok(metricsRegistry());
  });

  it("serves nothing else", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/`)).status, 404);
    assert.equal(
      (await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "POST", body: "x" })).status,
      405,
    );
  });

  it("stops even while a scraper keeps its connection open", async () => {
    const s = await startMetricsServer({ host: "127.0.0.1", port: 0 }, await enableMetrics());
    const res = await fetch(`http://127.0.0.1:${s.port}/metrics`, { keepalive: true });
    await res.text();
    await s.stop();
    await assert.rejects(fetch(`http://127.0.0.1:${s.port}/metrics`));
  });

  it("says which address is taken", async () => {
    await assert.rejects(
      startMetricsServer({ host: "127.0.0.1", port: server.port }, await enableMetrics()),
      /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/,
    );
  });
});

describe("nsm --metrics-listen-on", () => {
  const nsm = new URL("../../../bin/nsm.js", import.meta.url).pathname;

  it("a component refuses a bad value before it starts, naming the flag", () => {
    const r = spawnSync(
      process.execPath,
      [
        nsm,
        "registry",
        "--insecure",
        "--store",
        "memory",
        "--listen-on",
        "tcp://127.0.0.1:0",
        "--metrics-listen-on",
        "unix:///tmp/metrics.sock",
      ],
      { encoding: "utf8", timeout: 30_000, env: { ...process.env, NSM_METRICS_LISTEN_ON: "" } },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /nsm: --metrics-listen-on: "unix:\/\/\/tmp\/metrics\.sock" is not a TCP address/);
    assert.doesNotMatch(r.stderr, /registry serving/);
  });

  it("NSM_METRICS_LISTEN_ON is the flag's default", () => {
    const r = spawnSync(process.execPath, [nsm, "nsc", "--insecure", "--service", "x", "--once"], {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, NSM_METRICS_LISTEN_ON: "nonsense" },
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /nsm: --metrics-listen-on: "nonsense" is not host:port/);
  });
});
