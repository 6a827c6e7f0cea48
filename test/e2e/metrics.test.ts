// Metrics end to end (issue 16): a one-node mesh of real processes — registry, nsmgr, kernel forwarder,
// icmp-responder, and an nsc with healing — each serving --metrics-listen-on on 127.0.0.1, scraped by a real
// Prometheus (Debian's) this test starts. Real traffic: the nsc's Request (a veth pair between two pod
// namespaces of this run), a Request for a service nobody serves, an nsmgr killed and restarted (the nsc
// heals), and the nsc's Close on exit. Assertions are Prometheus queries.
//
// The components run in the root namespace on unix sockets and 127.0.0.1 (Prometheus scrapes from there);
// the only links made are the connection's veth pair, directly inside the run's pod namespaces.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Netns, links } from "../helpers/netns.js";
import { startComponent, tempDir, runNsm, eventually, type Component } from "../helpers/proc.js";
import { startPrometheus, type Prometheus, type PromSample } from "../helpers/prometheus.js";

const net = new Netns("nsmm");
const dir = tempDir("nsm-metrics-");
const procs: Component[] = [];
const sock = (n: string): string => `unix://${join(dir.path, `${n}.sock`)}`;
const svc = "metrics-svc";
// Per-run names: another test's kernel forwarder must never take our links for its orphans, nor we theirs.
const fwdName = `fwd-${net.prefix}`;
let prom: Prometheus;
let c1 = "";
let e1 = "";
const port: Record<string, number> = {};
let nsmgrArgs: string[] = [];
let nsmgr: Component;
let nsc: Component;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const metricsFlag = (name: string): string[] => ["--metrics-listen-on", `127.0.0.1:${port[name]}`];
/** The Prometheus instance label of a component's target. */
const target = (name: string): string => `127.0.0.1:${port[name]}`;
const value = (r: PromSample[]): number => r[0]?.value ?? NaN;

/** Waits until the single-valued `expr` satisfies `pred`; returns the value. */
async function waitValue(expr: string, pred: (v: number) => boolean, timeoutMs = 20_000): Promise<number> {
  return value(await prom.waitFor(expr, (r) => r.length === 1 && pred(value(r)), timeoutMs));
}

describe("metrics e2e: a real Prometheus scrapes every component", { timeout: 180_000 }, () => {
  before(async () => {
    c1 = net.add("c1");
    e1 = net.add("e1");
    for (const n of ["registry", "nsmgr", "forwarder", "nse", "nsc"]) port[n] = await freePort();
    // Started first: its first scrape comes ~5 s after start, meanwhile the components come up.
    prom = await startPrometheus({ targets: Object.keys(port).map(target), scrapeIntervalMs: 500 });

    const registry = await startComponent(
      ["registry", "--store", "memory", "--listen-on", "tcp://127.0.0.1:0", ...metricsFlag("registry")],
      "registry serving",
    );
    procs.push(registry);
    nsmgrArgs = [
      "nsmgr",
      "--name",
      "nsmgr-m",
      "--listen-on",
      `${sock("nsmgr")},tcp://127.0.0.1:0`,
      "--registry-url",
      registry.urls[0]!,
      ...metricsFlag("nsmgr"),
    ];
    nsmgr = await startComponent(nsmgrArgs, "nsmgr ready");
    procs.push(nsmgr);
    procs.push(
      await startComponent(
        [
          "forwarder",
          "kernel",
          "--name",
          fwdName,
          "--listen-on",
          sock("fwd"),
          "--connect-to",
          sock("nsmgr"),
          ...metricsFlag("forwarder"),
        ],
        "forwarder ready",
      ),
    );
    procs.push(
      await startComponent(
        [
          "nse",
          "icmp-responder",
          "--name",
          "nse-m",
          "--listen-on",
          sock("nse"),
          "--connect-to",
          sock("nsmgr"),
          "--services",
          svc,
          "--cidr",
          "169.254.77.0/24",
          "--netns",
          net.path(e1),
          ...metricsFlag("nse"),
        ],
        "endpoint ready",
      ),
    );
    // A client process with healing on (liveness checks ping inside the pod namespaces only).
    nsc = await startComponent(
      [
        "nsc",
        "--name",
        "nsc-m",
        "--connect-to",
        sock("nsmgr"),
        "--service",
        `kernel://${svc}/nsm-m`,
        "--netns",
        net.path(c1),
        ...metricsFlag("nsc"),
      ],
      "nsc connected",
    );
    procs.push(nsc);
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await prom?.stop();
    net.cleanup();
    dir.remove();
    assert.deepEqual(net.leftovers(), [], "no namespace of this run is left");
  });

  it("every component is scraped, with process memory and event-loop delay", async () => {
    await prom.waitFor("up == 1", (r) => r.length === 5, 30_000);
    const mem = await prom.waitFor("process_resident_memory_bytes", (r) => r.length === 5);
    assert.ok(
      mem.every((s) => s.value > 10e6),
      `resident memory of every process: ${JSON.stringify(mem)}`,
    );
    const lag = await prom.query("nodejs_eventloop_lag_p99_seconds");
    assert.equal(lag.length, 5);
    assert.ok(lag.every((s) => s.value >= 0 && s.value < 5));
  });

  it("the Request is counted, timed and live at every hop, by service", async () => {
    assert.deepEqual(links(c1), ["nsm-m"]);
    for (const component of ["nsc", "nsmgr", "forwarder", "nse"]) {
      const sel = `component="${component}",service="${svc}"`;
      const ok = await waitValue(
        `sum(nsm_networkservice_calls_total{${sel},method="request",code="OK"})`,
        (v) => v >= 1,
      );
      assert.ok(ok >= 1, component);
      await waitValue(
        `sum(nsm_networkservice_call_duration_seconds_count{${sel},method="request"})`,
        (v) => v >= 1,
      );
      const live = await waitValue(`sum(nsm_networkservice_connections{${sel},state="UP"})`, (v) => v === 1);
      assert.equal(live, 1, `${component}: one live connection`);
    }
    // Series are labelled by kind and service only: no connection ids, no addresses.
    const series = await prom.query(`nsm_networkservice_calls_total`);
    for (const s of series)
      assert.deepEqual(
        Object.keys(s.metric)
          .filter((k) => !["__name__", "job", "instance"].includes(k))
          .sort(),
        ["code", "component", "method", "service"],
      );
  });

  it("the forwarder's kernel operations and data-plane plumbing are timed", async () => {
    const fwd = `instance="${target("forwarder")}"`;
    const newlink = await waitValue(
      `sum(nsm_dataplane_netlink_request_duration_seconds_count{${fwd},op="newlink"})`,
      (v) => v >= 1,
    );
    assert.ok(newlink >= 1, "the veth pair was made with RTM_NEWLINK");
    await waitValue(`sum(nsm_dataplane_netlink_request_duration_seconds_count{${fwd}})`, (v) => v >= 3);
    await waitValue(
      `sum(nsm_forwarder_dataplane_duration_seconds_count{dataplane="kernel",op="apply",outcome="ok"})`,
      (v) => v >= 1,
    );
  });

  it("the registry reports its records, calls and watches", async () => {
    const reg = `component="registry"`;
    // The forwarder and the endpoint registered; the endpoint registered its service.
    assert.equal(await waitValue(`nsm_registry_network_service_endpoints{${reg}}`, (v) => v === 2), 2);
    assert.equal(await waitValue(`nsm_registry_network_services{${reg}}`, (v) => v === 1), 1);
    await waitValue(
      `sum(nsm_registry_calls_total{${reg},kind="nse",method="register",code="OK"})`,
      (v) => v >= 2,
    );
    await waitValue(`sum(nsm_registry_calls_total{${reg},kind="ns",method="find"})`, (v) => v >= 1);
    // The nsmgr's replica keeps watches open on the registry.
    await waitValue(`sum(nsm_registry_watches{${reg}})`, (v) => v >= 1);
  });

  it("a Request for a service nobody serves is counted by its gRPC code", async () => {
    const r = await runNsm([
      "nsc",
      "--name",
      "nsc-nowhere",
      "--connect-to",
      sock("nsmgr"),
      "--service",
      "no-such-svc",
      "--netns",
      net.path(c1),
      "--request-timeout",
      "3s",
      "--once",
    ]);
    assert.equal(r.code, 1, r.stderr);
    // discoverforwarder finds no such NetworkService: NOT_FOUND, by the service name the caller asked for.
    const failed = await waitValue(
      `sum(nsm_networkservice_calls_total{component="nsmgr",service="no-such-svc",code="NOT_FOUND"})`,
      (v) => v >= 1,
    );
    assert.ok(failed >= 1);
  });

  it("an nsmgr killed and restarted: the nsc heals (restore), counted with its outage", async () => {
    await nsmgr.kill();
    nsmgr = await startComponent(nsmgrArgs, "nsmgr ready");
    procs.push(nsmgr);
    const nscSel = `instance="${target("nsc")}"`;
    const heals = await waitValue(
      `sum(nsm_heals_total{${nscSel},service="${svc}",kind="restore"})`,
      (v) => v >= 1,
      30_000,
    );
    assert.ok(heals >= 1);
    const outage = await waitValue(
      `sum(nsm_heal_duration_seconds_sum{${nscSel}}) / sum(nsm_heal_duration_seconds_count{${nscSel}})`,
      (v) => v > 0,
    );
    assert.ok(outage < 30, `mean outage ${outage} s`);
    // The new nsmgr serves the healed connection.
    await waitValue(
      `sum(nsm_networkservice_connections{component="nsmgr",service="${svc}",state="UP"})`,
      (v) => v === 1,
      20_000,
    );
    assert.ok(links(c1).includes("nsm-m"), "the connection's interface stayed");
  });

  it("the nsc's Close on exit: live connections back to 0 at every hop, the veth deleted and timed", async () => {
    assert.equal(await nsc.stop(), 0);
    await eventually(() => links(c1).length === 0 && links(e1).length === 0, 10_000, "links removed");
    for (const component of ["nsmgr", "forwarder", "nse"]) {
      const sel = `component="${component}",service="${svc}"`;
      assert.equal(
        await waitValue(`sum(nsm_networkservice_connections{${sel}})`, (v) => v === 0),
        0,
        `${component}: no live connection`,
      );
      await waitValue(`sum(nsm_networkservice_calls_total{${sel},method="close",code="OK"})`, (v) => v >= 1);
    }
    await waitValue(
      `sum(nsm_dataplane_netlink_request_duration_seconds_count{instance="${target("forwarder")}",op="dellink"})`,
      (v) => v >= 1,
    );
    // The nsc exited: its target is down, the others are still up.
    await prom.waitFor(`up{instance="${target("nsc")}"} == 0`, (r) => r.length === 1);
  });
});
