// `node --import tsx bench/dataplane-ops.ts [--n 50] [--quick] [--no-json]`: milliseconds per data-plane
// operation through src/dataplane (rtnetlink, one socket per namespace) versus spawning `ip` (iproute2) for
// the same operation — the baseline the design replaces. Median (and p90) of N runs of each operation, in two
// namespaces this script creates with a per-run prefix and deletes on exit. Prints a table and writes
// bench/results/dataplane-ops.json (flat {"metric_ms": number}); `--quick` (N=10) and `--no-json` write none.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Dataplane, type NetnsHandle } from "../src/dataplane/index.js";
import { localSetupOps, quantile, sample as sampleN, timed, timeLocalSetup } from "./lib/netlink-ops.js";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const nArg = argv.indexOf("--n");
const N = nArg >= 0 ? Number(argv[nArg + 1]) : quick ? 10 : 50;
if (!Number.isInteger(N) || N < 1 || N > 250) throw new Error("--n must be an integer in 1..250");
const writeJson = !quick && !argv.includes("--no-json");
const WARMUP = 5;

const P = `nsmdpb${randomBytes(2).toString("hex")}`; // 10 chars; link names add ≤ 5
const NS_A = `${P}-a`;
const NS_B = `${P}-b`;
const resultsFile = join(dirname(fileURLToPath(import.meta.url)), "results", "dataplane-ops.json");

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Runs `op(i)` for i in 0..N-1 and returns the N durations. */
const sample = (op: (i: number) => unknown): Promise<number[]> => sampleN(N, op);

const addrOf = (base: number, i: number) => `100.${base}.${i >> 8}.${i & 255}/32`;
const routeOf = (base: number, i: number) => `198.19.${base + (i >> 8)}.${i & 255}`;

interface Row {
  op: string;
  key: string;
  netlink: number[];
  ip?: number[];
}

async function run(a: NetnsHandle, b: NetnsHandle): Promise<Row[]> {
  const rows: Row[] = [];
  const nl = (i: number) => `${P}n${i}`;
  const nlPeer = (i: number) => `${P}m${i}`;
  const sp = (i: number) => `${P}i${i}`;
  const spPeer = (i: number) => `${P}j${i}`;
  const mv = (i: number) => `${P}v${i}`;
  const mvPeer = (i: number) => `${P}w${i}`;

  // Warm-up (JIT, kernel caches) on both paths; the warm-up links are deleted before measuring.
  for (let i = N; i < N + WARMUP; i++) {
    await a.link.createVeth({ name: nl(i), peer: { name: nlPeer(i), netns: b } });
    await a.link.get(nl(i));
    ip("-n", NS_A, "link", "add", sp(i), "type", "veth", "peer", "name", spPeer(i), "netns", NS_B);
  }
  for (let i = N; i < N + WARMUP; i++) {
    await a.link.delete(nl(i));
    ip("-n", NS_A, "link", "del", sp(i));
  }

  rows.push({
    op: "veth create, peer made in other netns",
    key: "veth_create_peer_netns",
    netlink: await sample((i) =>
      a.link.createVeth({ name: nl(i), up: true, peer: { name: nlPeer(i), netns: b } }),
    ),
    ip: await sample((i) =>
      ip("-n", NS_A, "link", "add", sp(i), "up", "type", "veth", "peer", "name", spPeer(i), "netns", NS_B),
    ),
  });
  rows.push({
    op: "veth create, then move peer (2 requests)",
    key: "veth_create_then_move",
    netlink: await sample(async (i) => {
      await a.link.createVeth({ name: mv(i), peer: { name: mvPeer(i) } });
      await a.link.moveTo(mvPeer(i), b);
    }),
  });
  rows.push({
    op: "link get by name",
    key: "link_get",
    netlink: await sample((i) => a.link.get(nl(i)).then(() => undefined)),
    ip: await sample((i) => ip("-n", NS_A, "link", "show", sp(i))),
  });
  rows.push({
    op: "addr add (single request, allowDuplicate)",
    key: "addr_add",
    netlink: await sample((i) => a.addr.add(nl(i), addrOf(64, i), { allowDuplicate: true })),
    ip: await sample((i) => ip("-n", NS_A, "addr", "add", addrOf(65, i), "dev", sp(i))),
  });
  rows.push({
    op: "addr add (default: duplicate check dump first)",
    key: "addr_add_checked",
    netlink: await sample((i) => a.addr.add(nl(i), addrOf(66, i))),
  });
  rows.push({
    op: "route add (dev by name, scope link)",
    key: "route_add",
    netlink: await sample((i) => a.route.add({ dst: routeOf(0, i), dev: nl(i) })),
    ip: await sample((i) => ip("-n", NS_A, "route", "add", routeOf(4, i), "dev", sp(i))),
  });
  rows.push({
    op: "link del (veth; kernel waits for RCU)",
    key: "link_del",
    netlink: await sample((i) => a.link.delete(nl(i))),
    ip: await sample((i) => ip("-n", NS_A, "link", "del", sp(i))),
  });
  for (let i = 0; i < N; i++) await a.link.delete(mv(i), { missingOk: true });

  // The requests of one local connection, as the kernel forwarder sends them (bench/lib/netlink-ops.ts):
  // client ends in A, NSE ends in B (which ends up holding all N, like an NSE's pod).
  const setups = [];
  for (let i = 0; i < N; i++)
    setups.push(
      await timeLocalSetup(a, b, {
        clientIf: `${P}c${i}`,
        nseIf: `${P}e${i}`,
        alias: `nsm:${P}-fwd:${i}`,
        clientIp: `100.68.${i >> 8}.${i & 255}`,
        nseIp: `100.69.${i >> 8}.${i & 255}`,
      }),
    );
  for (const o of localSetupOps)
    rows.push({ op: `setup: ${o.what}`, key: `local_setup_${o.key}`, netlink: setups.map((t) => t[o.key]) });
  rows.push({
    op: "setup: all of the above (one local connection)",
    key: "local_setup_total",
    netlink: setups.map((t) => localSetupOps.reduce((sum, o) => sum + t[o.key], 0)),
  });
  for (let i = 0; i < N; i++) await a.link.delete(`${P}c${i}`, { missingOk: true });
  return rows;
}

async function main(): Promise<void> {
  ip("netns", "add", NS_A);
  ip("netns", "add", NS_B);
  const dp = new Dataplane();
  try {
    // Opening a namespace handle = open fd + setns in, socket, setns back.
    const openSamples: number[] = [];
    for (let i = 0; i < N; i++) {
      openSamples.push(
        await timed(() => {
          const h = dp.netns(`/var/run/netns/${NS_B}`);
          h.close();
        }),
      );
    }
    const a = dp.netns(`/var/run/netns/${NS_A}`);
    const b = dp.netns(`/var/run/netns/${NS_B}`);
    const rows = await run(a, b);
    rows.unshift({ op: "netns handle open+close (setns, socket)", key: "netns_open", netlink: openSamples });

    const width = Math.max(...rows.map((r) => r.op.length));
    console.log(`\ndata-plane operations, ms per operation, median (p90) of ${N} — netlink vs spawning ip\n`);
    const head = [
      "operation".padEnd(width),
      "netlink".padStart(16),
      "ip".padStart(16),
      "ip / netlink".padStart(13),
    ];
    console.log(head.join(" "));
    const json: Record<string, number> = { runs_per_op: N };
    const fmt = (xs: number[]) => `${quantile(xs, 0.5).toFixed(3)} (${quantile(xs, 0.9).toFixed(2)})`;
    for (const r of rows) {
      const nlMed = quantile(r.netlink, 0.5);
      const ipMed = r.ip ? quantile(r.ip, 0.5) : undefined;
      console.log(
        [
          r.op.padEnd(width),
          fmt(r.netlink).padStart(16),
          (r.ip ? fmt(r.ip) : "—").padStart(16),
          (ipMed !== undefined ? `${(ipMed / nlMed).toFixed(1)}×` : "").padStart(13),
        ].join(" "),
      );
      json[`${r.key}_netlink_median_ms`] = round(nlMed);
      json[`${r.key}_netlink_p90_ms`] = round(quantile(r.netlink, 0.9));
      if (r.ip && ipMed !== undefined) {
        json[`${r.key}_ip_median_ms`] = round(ipMed);
        json[`${r.key}_ip_p90_ms`] = round(quantile(r.ip, 0.9));
      }
    }
    if (writeJson) {
      mkdirSync(dirname(resultsFile), { recursive: true });
      writeFileSync(resultsFile, `${JSON.stringify(json, null, 2)}\n`);
      console.log(`\nwrote ${resultsFile}`);
    }
  } finally {
    dp.close();
    for (const ns of [NS_A, NS_B]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // already gone
      }
    }
  }
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    for (const ns of [NS_A, NS_B]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // not created yet or already gone
      }
    }
    process.exit(130);
  });
}

await main();
