// `npm run bench:heal`: the data-path outage of each heal scenario (test/helpers/healscenarios.ts). Two nodes
// in namespaces (underlay 198.18.0.0/24), registry, nsmgr and kernel forwarder per node, icmp-responders for
// a local and a remote service; a client in this process with healing on (liveness every 200 ms, 1 s
// timeout) and a probe pinging across its connection every 10 ms. Each scenario kills one component (kill -9)
// and starts it again, or breaks the data path, and waits until the client healed. Reported per scenario: the
// longest gap between two replies (outage) and the probes lost, median over the runs. Baseline in the same
// run: the same probe on an undisturbed connection (its longest gap is the probe's own jitter). Last, a TF
// connection in an emulated TF cluster (test/helpers/tfcluster.ts) while its TF forwarder restarts.
// Everything carries a per-run prefix and is removed at the end. Writes bench/results/heal.json.
import { median } from "./lib/control-plane-mesh.js";
import { fmt, printTable, writeResults } from "./lib/report.js";
import { HealMesh, Probe, host } from "../test/helpers/healmesh.js";
import { TfCluster } from "../test/helpers/tfcluster.js";
import { NsmClient } from "../src/components/client.js";
import { createSecurity } from "../src/components/security.js";
import {
  clientNetnsDeleted,
  registryRestart,
  scenarios,
  type ScenarioResult,
} from "../test/helpers/healscenarios.js";

const quick = process.argv.includes("--quick");

/** A TF connection (emulated cluster) under the probe while its TF forwarder is killed and restarted. */
async function tfForwarderRestart(): Promise<ScenarioResult> {
  const cluster = new TfCluster({ nodes: [{}] });
  try {
    await cluster.start();
    await cluster.provision();
    const node = cluster.nodes[0]!;
    const pod = cluster.net.add("p");
    const client = new NsmClient({
      name: "nsc-tf-heal",
      nsmgrUrl: node.nsmgrSock,
      netnsPath: cluster.net.path(pod),
      labels: { nodeName: node.name },
      security: createSecurity({ name: "nsc-tf-heal" }),
      heal: {},
    });
    const conn = await client.request({ service: "external", ifname: "nsm-tf" });
    const probe = new Probe(cluster.net.path(pod), {
      src: host(conn.context!.ipContext!.srcIpAddrs[0]),
      dst: conn.context!.extraContext["tf.gateway"]!,
    });
    await new Promise((r) => setTimeout(r, 300));
    await node.procs.get("fwd-tf")!.kill();
    await cluster.startTfForwarder(node, 1, ["--orphan-grace", "10s"]);
    const end = Date.now() + 20_000;
    while (client.heal!.counts.restore + client.heal!.counts.reselect === 0 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500));
    const r = await probe.stop();
    await client.closeAll();
    return {
      scenario: "tf_forwarder_restart",
      kind: "restore",
      ...r,
      heals: client.heal!.counts.restore + client.heal!.counts.reselect,
      restores: client.heal!.counts.restore,
      reselects: client.heal!.counts.reselect,
      detail: `TF connection; restores ${client.heal!.counts.restore}, reselects ${client.heal!.counts.reselect}`,
    };
  } finally {
    await cluster.stop();
  }
}
const runs = quick ? 1 : 3;
const mesh = new HealMesh();
let stopping = false;
const cleanup = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await mesh.stop();
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

try {
  await mesh.start();
  const results: Record<string, number> = {};
  const rows: string[][] = [];

  // Baseline: nothing breaks.
  const pod = mesh.net.add("base");
  const client = mesh.client("nsc-baseline", pod);
  const conn = await client.request({ service: "local-svc", ifname: "nsm-b" });
  const probe = new Probe(mesh.net.path(pod), conn);
  await new Promise((r) => setTimeout(r, 3000));
  const base = await probe.stop();
  await client.closeAll();
  results.baseline_outage_ms = base.outageMs;
  results.baseline_lost_packets = base.lost;
  rows.push(["baseline (nothing breaks)", "—", fmt(base.outageMs), String(base.lost), String(base.sent), ""]);

  const all: ScenarioResult[][] = [];
  for (const s of scenarios) {
    const rs: ScenarioResult[] = [];
    for (let i = 0; i < runs; i++) rs.push(await s.run(mesh));
    all.push(rs);
  }
  const reg: ScenarioResult[] = [];
  for (let i = 0; i < runs; i++) reg.push(await registryRestart(mesh));
  all.push(reg);
  const gone = await clientNetnsDeleted(mesh);
  await cleanup();
  const tf: ScenarioResult[] = [];
  for (let i = 0; i < runs; i++) tf.push(await tfForwarderRestart());
  all.push(tf);

  for (const rs of all) {
    const r0 = rs[0]!;
    const outage = median(rs.map((r) => r.outageMs));
    const lost = Math.max(...rs.map((r) => r.lost));
    results[`${r0.scenario}_outage_ms`] = outage;
    results[`${r0.scenario}_lost_packets_max`] = lost;
    rows.push([
      r0.scenario,
      r0.kind,
      fmt(outage),
      String(lost),
      String(median(rs.map((r) => r.sent))),
      r0.detail,
    ]);
  }
  rows.push([gone.scenario, gone.kind, "—", "—", "—", gone.detail]);
  const restores = all.flat().filter((r) => r.kind === "restore");
  const reselects = all.flat().filter((r) => r.kind === "reselect");
  results.restore_lost_packets_max = Math.max(...restores.map((r) => r.lost));
  results.reselect_outage_ms_max = Math.max(...reselects.map((r) => r.outageMs));
  printTable(
    `heal: outage per scenario (median of ${runs}; lost = max of the runs), probe every 10 ms`,
    ["scenario", "heal", "outage ms", "lost", "probes", "detail"],
    rows,
  );
  console.log(
    `\nrestore_lost_packets_max ${results.restore_lost_packets_max} (target 0); reselect_outage_ms_max ${results.reselect_outage_ms_max}`,
  );
  writeResults(new URL("./results/heal.json", import.meta.url).pathname, results, quick);
} finally {
  await cleanup();
}
