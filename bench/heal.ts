// `npm run bench:heal`: what each heal scenario (test/helpers/healscenarios.ts) costs a live connection. Two
// nodes in namespaces (underlay 198.18.0.0/24), registry, nsmgr and kernel forwarder per node, icmp-responders
// for a local and a remote service; a client in this process with healing on (liveness every 200 ms, 1 s
// timeout) and a probe pinging the connection's *current* addresses every 10 ms. Each scenario kills one
// component (kill -9) and starts it again, or breaks the data path, and waits until the client healed.
// Reported per scenario, over the runs:
//   - the data-path outage: the longest time without a reply, including one that lasts to the end (median);
//   - the probes lost (maximum);
//   - the control-plane outage: from the kill to the first Request that the healed path served (median, max);
//   - the kind of heal, read from the client's heal counters, and whether traffic flowed at the end.
// Figures are grouped by the kind that happened, never by the kind a scenario expects; a run whose kind
// differs from the expected one is counted (`heal_kind_mismatches`) and flagged. Baseline in the same run: the
// same probe on an undisturbed connection (its longest gap is the probe's own jitter). Last, a TF connection
// in an emulated TF cluster (test/helpers/tfcluster.ts) while its TF forwarder restarts.
// Everything carries a per-run prefix and is removed at the end. Writes bench/results/heal.json.
import { median } from "./lib/control-plane-mesh.js";
import { fmt, printTable, writeResults } from "./lib/report.js";
import { HealMesh } from "../test/helpers/healmesh.js";
import { TfCluster } from "../test/helpers/tfcluster.js";
import {
  clientNetnsDeleted,
  probeClient,
  registryRestart,
  scenarios,
  tfForwarderRestart,
  type ScenarioResult,
} from "../test/helpers/healscenarios.js";

const quick = process.argv.includes("--quick");
const runs = quick ? 1 : 3;

async function tfRun(): Promise<ScenarioResult> {
  const cluster = new TfCluster({ nodes: [{}] });
  try {
    await cluster.start();
    await cluster.provision();
    return await tfForwarderRestart(cluster, cluster.nodes[0]!, cluster.net.add("p"));
  } finally {
    await cluster.stop();
  }
}

const mesh = new HealMesh();
let stopping = false;
const cleanup = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await mesh.stop();
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

const maxOf = (xs: number[]): number => (xs.length ? Math.max(...xs) : NaN);

/**
 * One run of a scenario; a run that fails (the client never healed within the scenario's 20 s) is kept as a
 * failed heal — counted and shown, never dropped — and the benchmark goes on.
 */
async function attempt(
  name: string,
  expected: ScenarioResult["expected"],
  run: () => Promise<ScenarioResult>,
): Promise<ScenarioResult> {
  try {
    return await run();
  } catch (err) {
    const why = (err as Error).message;
    console.error(`${name}: FAILED: ${why}`);
    return {
      scenario: name,
      expected,
      kind: "none",
      outageMs: Infinity,
      lost: Infinity,
      sent: 0,
      flowsAtEnd: false,
      heals: 0,
      restores: 0,
      reselects: 0,
      failed: why,
      detail: `FAILED: ${why}`,
    };
  }
}

try {
  await mesh.start();
  const results: Record<string, number> = {};
  const rows: string[][] = [];

  // Baseline: nothing breaks.
  const pod = mesh.net.add("base");
  const client = mesh.client("nsc-baseline", pod);
  await client.request({ service: "local-svc", ifname: "nsm-b" });
  const probe = probeClient(mesh.net.path(pod), client);
  await new Promise((r) => setTimeout(r, 3000));
  const base = await probe.stop();
  await client.closeAll();
  results.baseline_outage_ms = base.outageMs;
  results.baseline_lost_packets = base.lost;
  rows.push(["baseline (nothing breaks)", "—", "—", fmt(base.outageMs), String(base.lost), "—", "", ""]);

  const all: ScenarioResult[][] = [];
  for (const s of scenarios) {
    const rs: ScenarioResult[] = [];
    for (let i = 0; i < runs; i++) rs.push(await attempt(s.name, s.expected, () => s.run(mesh)));
    all.push(rs);
  }
  const reg: Awaited<ReturnType<typeof registryRestart>>[] = [];
  for (let i = 0; i < runs; i++) reg.push(await registryRestart(mesh));
  all.push(reg);
  results.registry_restart_new_connection_ms = median(reg.map((r) => r.newConnectionMs));
  const gone = await clientNetnsDeleted(mesh);
  await cleanup();
  const tf: ScenarioResult[] = [];
  for (let i = 0; i < runs; i++) tf.push(await attempt("tf_forwarder_restart", "restore", tfRun));
  all.push(tf);

  for (const all1 of all) {
    const r0 = all1[0]!;
    // Failed runs have no outage to measure: they are counted apart (and as a kind mismatch).
    const rs = all1.filter((r) => r.failed === undefined);
    const failures = all1.length - rs.length;
    const kinds = [...new Set(all1.map((r) => (r.failed ? "FAILED" : r.kind)))].join("+");
    const mismatches = all1.filter((r) => r.kind !== r.expected).length;
    const outage = rs.length ? median(rs.map((r) => r.outageMs)) : NaN;
    const lost = maxOf(rs.map((r) => r.lost));
    const cp = rs.flatMap((r) => (r.controlPlaneMs === undefined ? [] : [r.controlPlaneMs]));
    const stuck = all1.filter((r) => !r.flowsAtEnd).length;
    results[`${r0.scenario}_failures`] = failures;
    if (rs.length) {
      results[`${r0.scenario}_outage_ms`] = outage;
      results[`${r0.scenario}_lost_packets_max`] = lost;
    }
    if (cp.length) {
      results[`${r0.scenario}_control_plane_ms`] = median(cp);
      results[`${r0.scenario}_control_plane_ms_max`] = maxOf(cp);
    }
    results[`${r0.scenario}_kind_mismatches`] = mismatches;
    results[`${r0.scenario}_no_traffic_at_end`] = stuck;
    rows.push([
      r0.scenario,
      r0.expected,
      mismatches ? `${kinds} (!)` : kinds,
      fmt(outage),
      String(lost),
      cp.length ? `${fmt(median(cp))} / ${fmt(maxOf(cp))}` : "—",
      stuck ? `NO (${stuck} of ${all1.length})` : "yes",
      (rs[0] ?? r0).detail,
    ]);
  }
  rows.push([gone.scenario, gone.expected, gone.kind, "—", "—", "—", "—", gone.detail]);

  // Grouped by what happened. Registry restarts need no heal ("none"): their data path counts with restores.
  const flat = all.flat().filter((r) => r.failed === undefined);
  const intact = flat.filter((r) => r.kind === "restore" || r.kind === "none");
  const restores = flat.filter((r) => r.kind === "restore");
  const reselects = flat.filter((r) => r.kind === "reselect");
  results.restore_lost_packets_max = maxOf(intact.map((r) => r.lost));
  results.restore_outage_ms_max = maxOf(intact.map((r) => r.outageMs));
  results.restore_control_plane_ms_max = maxOf(restores.map((r) => r.controlPlaneMs ?? Infinity));
  results.reselect_outage_ms_max = maxOf(reselects.map((r) => r.outageMs));
  results.reselect_control_plane_ms_max = maxOf(reselects.map((r) => r.controlPlaneMs ?? Infinity));
  const every = all.flat();
  results.heal_runs = every.length;
  results.heal_kind_mismatches = every.filter((r) => r.kind !== r.expected).length;
  results.heal_no_traffic_at_end = every.filter((r) => !r.flowsAtEnd).length;
  results.heal_failures = every.filter((r) => r.failed !== undefined).length;
  printTable(
    `heal per scenario (outage: median of ${runs}; lost: max; control plane: kill → healed Request, median / max), probe every 10 ms`,
    ["scenario", "expected", "happened", "outage ms", "lost", "control plane ms", "flows at end", "detail"],
    rows,
  );
  console.log(
    [
      "",
      `grouped by the kind the heal counters show (${results.heal_runs} runs; never healed in ${results.heal_failures}; kind ≠ expected in ${results.heal_kind_mismatches}; no traffic at the end in ${results.heal_no_traffic_at_end}):`,
      `  restores (and the registry restart): lost max ${results.restore_lost_packets_max} (target 0), outage max ${fmt(results.restore_outage_ms_max)} ms, control plane back after max ${fmt(results.restore_control_plane_ms_max)} ms`,
      `  reselects: outage max ${fmt(results.reselect_outage_ms_max)} ms (target ≤ 1000), control plane back after max ${fmt(results.reselect_control_plane_ms_max)} ms`,
      `  registry restart: new connections work again ${fmt(results.registry_restart_new_connection_ms)} ms after the kill (median)`,
    ].join("\n"),
  );
  writeResults(new URL("./results/heal.json", import.meta.url).pathname, results, quick);
} finally {
  await cleanup();
}
