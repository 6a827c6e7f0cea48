// `npm run bench:tf`: what a connection through the TF forwarder costs, beside the kernel forwarder in the same
// run, and what the TF emulator's Linux data path carries from a pod to the internet.
// Topology (test/helpers/tfcluster.ts): an emulated TF cluster in namespaces — gw (fabric bridge, config API
// emulator, registry, route to an "internet" namespace), one compute node-1 with a vRouter agent emulator,
// nsmgr, `forwarder tf` + `nse tf-vn` (service `external` on TF VN default-domain:k8s-default:external, SNAT
// through a logical router) and, as the baseline, `forwarder kernel` + `nse icmp-responder` (service icmp-1,
// a veth). NsmClients in this process request connections for client pod namespaces:
//   - setup latency (Request → response, interface configured in the pod) p50/p99, 1 and 10 in flight, TF and
//     kernel rounds interleaved (A B B A) so machine noise hits both alike; Close latency alike;
//   - TCP throughput pod → internet (iperf3 -J, single stream, median of several runs) through the TF
//     connection: pod veth → compute bridge → the VN's VRF → its leg back onto the bridge → the logical
//     router's SNAT instance (scheduled on this compute; nft SNAT to its address in VN public) → compute →
//     fabric → gw → internet namespace. Every hop of that path is the emulator's Linux plumbing (src/tf-emulator/agent), not a
//     vRouter and nothing NSM forwards: it is a figure of the emulator's data path, not of TF or of NSM.
// Every namespace carries a per-run prefix and is deleted at the end (also on failure). Addresses: fabric
// 198.18.0.0/24, VN 100.64.10.0/24, internet 203.0.113.0/24, NSM 169.254.1.0/24. Nothing in the root namespace.
// Prints a table and writes bench/results/tf.json. `--quick`: scaled-down pass, no JSON.
import { execFileSync, spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { NsmClient } from "../src/components/client.js";
import { createSecurity } from "../src/components/security.js";
import type { Connection } from "../src/api/connection.js";
import { median, percentile } from "./lib/control-plane-mesh.js";
import { fmt, printTable, writeResults } from "./lib/report.js";
import { TfCluster, internetIp, type TfNode } from "../test/helpers/tfcluster.js";

const quick = process.argv.includes("--quick");
const cfg = {
  pods: 10,
  /** Setups per pod per round (one interface name each), all held until the round closes them. */
  perPod: quick ? 1 : 3,
  rounds: quick ? 1 : 4,
  concurrency: [1, 10] as const,
  iperfSeconds: quick ? 1 : 4,
  iperfReps: quick ? 1 : 5,
};

interface Round {
  setup: number[];
  close: number[];
}

/** clients[k][pod]: one client per interface, as a client refuses two interfaces in one prefix. */
async function runRound(
  clients: NsmClient[][],
  service: string,
  concurrency: number,
  tag: string,
): Promise<Round> {
  const jobs: { c: NsmClient; ifname: string }[] = [];
  clients.forEach((row, k) => row.forEach((c) => jobs.push({ c, ifname: `${tag}${k}` })));
  const setup: number[] = [];
  const made: { c: NsmClient; conn: Connection }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const j = jobs[next++]!;
      const t0 = performance.now();
      const conn = await j.c.request({ service, ifname: j.ifname });
      setup.push(performance.now() - t0);
      made.push({ c: j.c, conn });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const close: number[] = [];
  next = 0;
  const closer = async (): Promise<void> => {
    while (next < made.length) {
      const m = made[next++]!;
      const t0 = performance.now();
      await m.c.close(m.conn.id);
      close.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, closer));
  return { setup, close };
}

function iperf(serverNs: string, clientNs: string, dst: string): number {
  const srv = spawn("ip", ["netns", "exec", serverNs, "iperf3", "-s", "-1", "-B", dst], { stdio: "ignore" });
  try {
    execFileSync("sleep", ["0.3"]);
    const out = execFileSync(
      "ip",
      ["netns", "exec", clientNs, "iperf3", "-J", "-c", dst, "-t", String(cfg.iperfSeconds)],
      { encoding: "utf8", timeout: (cfg.iperfSeconds + 15) * 1000 },
    );
    const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill();
  }
}

const cluster = new TfCluster({ nodes: [{ kernel: true }] });
let stopping = false;
const cleanup = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await cluster.stop();
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
process.on("SIGTERM", () => void cleanup().then(() => process.exit(143)));

try {
  console.log("starting the emulated TF cluster…");
  await cluster.start();
  await cluster.provision();
  const node = cluster.nodes[0] as TfNode;
  const pods = Array.from({ length: cfg.pods }, (_, i) => cluster.net.add(`c${i}`));
  const clients = Array.from({ length: cfg.perPod }, (_, k) =>
    pods.map(
      (p, i) =>
        new NsmClient({
          name: `bench-${k}-${i}`,
          nsmgrUrl: node.nsmgrSock,
          netnsPath: cluster.net.path(p),
          labels: { nodeName: node.name },
          security: createSecurity({ name: `bench-${k}-${i}`, insecure: true }),
        }),
    ),
  );
  const all = clients.flat();
  // Warm-up: first connections pay for JIT, channels and the VN's first plumbing on the compute.
  await runRound([clients[0]!.slice(0, 2)], "external", 1, "w");
  await runRound([clients[0]!.slice(0, 2)], "icmp-1", 1, "v");

  const results: Record<string, number> = {};
  const rows: string[][] = [];
  for (const c of cfg.concurrency) {
    const acc: Record<"tf" | "kernel", Round> = {
      tf: { setup: [], close: [] },
      kernel: { setup: [], close: [] },
    };
    for (let r = 0; r < cfg.rounds; r++) {
      // A B B A: the order alternates so drift hits both.
      const order: ("tf" | "kernel")[] = r % 2 === 0 ? ["tf", "kernel"] : ["kernel", "tf"];
      for (const kind of order) {
        const res = await runRound(
          clients,
          kind === "tf" ? "external" : "icmp-1",
          c,
          kind === "tf" ? "t" : "k",
        );
        acc[kind].setup.push(...res.setup);
        acc[kind].close.push(...res.close);
      }
    }
    for (const kind of ["tf", "kernel"] as const) {
      const s = [...acc[kind].setup].sort((a, b) => a - b);
      const cl = [...acc[kind].close].sort((a, b) => a - b);
      const sfx = c === 1 ? "" : `_c${c}`;
      results[`${kind}_setup_p50_ms${sfx}`] = percentile(s, 0.5);
      results[`${kind}_setup_p99_ms${sfx}`] = percentile(s, 0.99);
      results[`${kind}_close_p50_ms${sfx}`] = percentile(cl, 0.5);
      results[`${kind}_setup_samples${sfx}`] = s.length;
      rows.push([
        `${kind} c${c}`,
        fmt(percentile(s, 0.5)),
        fmt(percentile(s, 0.99)),
        fmt(percentile(cl, 0.5)),
        String(s.length),
      ]);
    }
    results[`tf_over_kernel_setup_p50_ratio${c === 1 ? "" : `_c${c}`}`] =
      results[`tf_setup_p50_ms${c === 1 ? "" : `_c${c}`}`]! /
      results[`kernel_setup_p50_ms${c === 1 ? "" : `_c${c}`}`]!;
  }
  printTable("connection setup (ms)", ["forwarder", "setup p50", "setup p99", "close p50", "samples"], rows);

  const tput: number[] = [];
  await all[0]!.request({ service: "external", ifname: "nsm-ip" });
  for (let i = 0; i < cfg.iperfReps; i++) tput.push(iperf(cluster.inet, pods[0]!, internetIp));
  await all[0]!.closeAll();
  // The emulator's Linux data path (veth → bridge → VRF → bridge → SNAT instance → compute → fabric), not a TF or
  // an NSM figure; the key keeps its name (before 2026-12-05 the path was VRF masquerade → compute masquerade).
  results.pod_to_internet_gbps = median(tput);
  results.pod_to_internet_runs = tput.length;
  printTable(
    "throughput pod → internet through the TF emulator's Linux data path (veth → bridge → the VN's VRF → bridge → the router's SNAT instance, nft SNAT → compute → fabric; not a TF or NSM figure), iperf3 single stream",
    ["runs", "median Gbit/s", "min", "max"],
    [[String(tput.length), fmt(median(tput)), fmt(Math.min(...tput)), fmt(Math.max(...tput))]],
  );
  for (const c of all) await c.closeAll();
  writeResults(new URL("./results/tf.json", import.meta.url).pathname, results, quick);
} finally {
  await cleanup();
}
