// `npm run bench:k8s`: nsm-ts on the local two-node Kubernetes (scripts/k8s), timed. Once per run: images,
// cluster up, SPIRE ready, mesh ready (basic + TF overlay + tf-emulator), `kubectl delete -k`, cluster down.
// Then, over several rounds on kernel2vxlan2kernel (client and endpoint on different nodes):
//   - connect: the client pod applied → its injected NSC has connected; beside it, in the same round, the
//     NSC's own Request time (`setupMs`), so the ratio says what Kubernetes adds (pod start, webhook, SVID);
//   - outage while the client's nsmgr pod is deleted, and while the client's kernel forwarder pod is deleted
//     (the unfavourable case: the process that owns the data path goes), from 50 ms pings: the longest gap;
//   - baseline: the same ping on the undisturbed connection for as long (its longest gap is jitter).
// Medians and maxima over the rounds; failures counted. Writes bench/results/k8s.json. Needs the cached
// Kubernetes binaries (scripts/k8s/build.sh), SPIRE (scripts/build-spire.sh) and `npm run build`.
import { median } from "./lib/control-plane-mesh.js";
import { fmt, printTable, writeResults } from "./lib/report.js";
import {
  clusterWithMesh,
  nscConnection,
  deleteAll,
  kubectl,
  pingsDone,
  pods,
  readyPods,
  replaceNodePod,
  script,
  startPings,
} from "../test/k8s/cluster.js";

const quick = process.argv.includes("--quick");
const rounds = quick ? 1 : 5;
const deploy = new URL("../deploy/k8s/", import.meta.url).pathname;
const ns = "ns-kernel2vxlan2kernel";
const once: Record<string, number> = {};
let failures = 0;

async function timed(what: string, f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  const ms = performance.now() - t0;
  once[what] = Math.round(ms);
  console.log(`${what}: ${fmt(ms / 1000)} s`);
  return ms;
}

/** Pings `dst` every 50 ms for `seconds` from the client while `disturb` runs; the longest gap in ms. */
async function outage(dst: string, seconds: number, disturb: () => Promise<void>): Promise<number> {
  const file = "/tmp/p.log";
  await startPings(ns, "alpine", "alpine", dst, { intervalS: 0.05, seconds, file });
  await new Promise((r) => setTimeout(r, 2000));
  await disturb();
  const { longestGap } = await pingsDone(ns, "alpine", "alpine", file, (seconds + 30) * 1000);
  return longestGap * 50;
}

/** Deletes the client node's pod of `app` and waits for its replacement to be Ready. */
async function replace(app: string): Promise<void> {
  const [client] = await pods(ns, "app=alpine");
  await replaceNodePod(app, client!.spec.nodeName!);
}

const samples = {
  connect: [] as number[],
  setup: [] as number[],
  nsmgr: [] as number[],
  fwd: [] as number[],
  base: [] as number[],
};

async function round(i: number): Promise<void> {
  const t0 = performance.now();
  await kubectl(["apply", "-k", `${deploy}examples/kernel2vxlan2kernel`]);
  await readyPods(ns, "app=alpine", 1);
  const { setupMs, dstIps } = await nscConnection(ns, "alpine", 100);
  const dst = dstIps[0]!.split("/")[0]!;
  samples.connect.push(performance.now() - t0);
  samples.setup.push(setupMs);
  samples.base.push(await outage(dst, 12, () => Promise.resolve()));
  samples.nsmgr.push(await outage(dst, 15, () => replace("nsmgr")));
  samples.fwd.push(await outage(dst, 20, () => replace("forwarder-kernel")));
  console.log(
    `round ${i + 1}: connect ${fmt(samples.connect.at(-1)!)} ms (NSC Request ${fmt(setupMs)} ms), ` +
      `outage nsmgr ${samples.nsmgr.at(-1)} ms, forwarder ${samples.fwd.at(-1)} ms, baseline ${samples.base.at(-1)} ms`,
  );
  await kubectl(["-n", ns, "delete", "pod", "alpine", "--wait=true"], 120_000);
}

try {
  await clusterWithMesh(timed);
  for (let i = 0; i < rounds; i++) {
    try {
      await round(i);
    } catch (err) {
      failures++;
      console.error(`round ${i + 1} failed: ${(err as Error).message}`);
      await kubectl(
        ["-n", ns, "delete", "pod", "alpine", "--ignore-not-found", "--wait=true"],
        120_000,
      ).catch(() => undefined);
    }
  }
  await timed("delete -k", () => deleteAll(["kernel2vxlan2kernel"]));
} finally {
  await timed("cluster down", () => script("down.sh"));
}

const max = (v: number[]): number => (v.length ? Math.max(...v) : NaN);
const ok = samples.connect.length;
printTable(
  `nsm-ts on Kubernetes: ${ok} of ${rounds} rounds ok (client on one node, icmp-responder on the other)`,
  ["figure", "median", "max"],
  [
    ["client pod applied → NSC connected (ms)", fmt(median(samples.connect)), fmt(max(samples.connect))],
    ["  of which the NSC's Request (ms)", fmt(median(samples.setup)), fmt(max(samples.setup))],
    ["  connect ÷ Request", fmt(median(samples.connect) / median(samples.setup)), ""],
    ["outage, nsmgr pod deleted (ms)", fmt(median(samples.nsmgr)), fmt(max(samples.nsmgr))],
    ["outage, kernel forwarder pod deleted (ms)", fmt(median(samples.fwd)), fmt(max(samples.fwd))],
    ["baseline: longest gap, undisturbed (ms)", fmt(median(samples.base)), fmt(max(samples.base))],
  ],
);
printTable(
  "once per run",
  ["step", "s"],
  Object.entries(once).map(([k, v]) => [k, fmt(v / 1000)]),
);
writeResults(
  new URL("results/k8s.json", import.meta.url).pathname,
  {
    rounds,
    rounds_failed: failures,
    connect_ms_p50: median(samples.connect),
    connect_ms_max: max(samples.connect),
    nsc_request_ms_p50: median(samples.setup),
    outage_nsmgr_delete_ms_p50: median(samples.nsmgr),
    outage_nsmgr_delete_ms_max: max(samples.nsmgr),
    outage_forwarder_delete_ms_p50: median(samples.fwd),
    outage_forwarder_delete_ms_max: max(samples.fwd),
    baseline_gap_ms_p50: median(samples.base),
    baseline_gap_ms_max: max(samples.base),
    ...Object.fromEntries(Object.entries(once).map(([k, v]) => [`${k.replace(/[^a-z]+/gi, "_")}_ms`, v])),
  },
  quick,
);
if (failures > 0) process.exitCode = 1;
