// `nsm demo`: two clouds on one machine (topology.ts), every component as its own process, then five
// scenarios proven with real traffic. Cloud A: nodes a1 and a2, registry and TF emulator on gw-a, an
// icmp-responder on a2, TF VN `external` (logical-router SNAT, floating IPs from `public`). Cloud B: node b1.
// VN `stretch` exists in both clouds with one route target and VNI, so it spans the WAN.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ping } from "../dataplane/index.js";
import { VncClient } from "../forwarder/tf/vnc.js";
import { DemoIdentities, DemoStepError, demoTrustDomain, Procs, readLines, stopPids } from "./procs.js";
import {
  build,
  gwAIp,
  gwBIp,
  internetIp,
  internetIp6,
  publicSubnet6,
  netnsDel,
  netnsPath,
  plan,
  type DemoNode,
  type Topology,
} from "./topology.js";
import {
  demoDir,
  leftoverNamespaces,
  leftoverPids,
  readState,
  removeDemoFiles,
  writeState,
  type DemoState,
} from "./state.js";

const nsmBin = new URL("../../bin/nsm.js", import.meta.url).pathname;

export interface DemoOptions {
  keep: boolean;
  out: (line: string) => void;
}

interface Conn {
  service: string;
  srcIps: string[];
  dstIps: string[];
  extra?: Record<string, string>;
  setupMs?: number;
}

interface Row {
  scenario: string;
  path: string;
  addresses: string;
  setup: string;
  result: string;
}

const host = (cidr: string | undefined): string => (cidr ?? "").split("/")[0]!;

/** What every phase of a run needs. */
interface DemoRun {
  t: Topology;
  procs: Procs;
  dir: string;
  env: Record<string, string>;
  sock: (node: string, n: string) => string;
  say: (s: string) => void;
}

interface Clients {
  local: Conn;
  remote: Conn;
  snat: Conn;
  fip: Conn;
  pub: Conn;
  strA: Conn;
  strB: Conn;
}

export async function runDemo(opts: DemoOptions): Promise<boolean> {
  const started = performance.now();
  const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  const prefix = `nsmd${randomBytes(2).toString("hex")}`;
  const t = plan(prefix);
  const dir = demoDir;
  mkdirSync(join(dir, "logs"), { recursive: true });
  const state: DemoState = {
    prefix,
    startedAt: new Date().toISOString(),
    demoPid: process.pid,
    namespaces: t.namespaces,
    pids: [],
    keep: opts.keep,
  };
  writeState(state);
  const identities = await DemoIdentities.create(dir);
  const procs = new Procs(
    dir,
    (p) => {
      state.pids.push(p.pid);
      writeState(state);
    },
    identities,
  );
  const env = { NSM_DEMO: prefix };
  // Ctrl-C (or a TERM) mid-run removes what was made so far, unless --keep asked to leave it.
  const interrupted = (sig: NodeJS.Signals): void => {
    opts.out(`\n${sig}: removing the demo`);
    void teardown(state).finally(() => process.exit(130));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const rows: Row[] = [];
  const say = (s: string): void => opts.out(`  [${elapsed().padStart(6)}] ${s}`);
  let ok = false;
  let dashboardUrl: string | undefined;
  try {
    opts.out(`nsm demo: two clouds in network namespaces (prefix ${prefix}), state in ${dir}`);
    await build(t);
    say("network built: cloud A (nodes a1, a2), cloud B (node b1), WAN, internet");
    say(`secure: mTLS and signed tokens, an X.509-SVID of spiffe://${demoTrustDomain} for every process`);

    const sock = (node: string, n: string): string => `unix://${join(dir, node, `${n}.sock`)}`;
    const run: DemoRun = { t, procs, dir, env, sock, say };
    await startServices(run);
    if (opts.keep) dashboardUrl = await startDashboard(run);
    const conns = await startClients(run);
    say("all clients connected; proving each path with traffic");
    await proveScenarios(run, conns, rows);
    ok = true;
    return true;
  } catch (err) {
    opts.out(`\nFAILED: ${(err as Error).message}`);
    const log = err instanceof DemoStepError ? err.log : undefined;
    for (const file of log ? [log] : procs.list.map((p) => p.log)) {
      const lines = readLines(file).slice(-15);
      if (lines.length > 0) opts.out(`--- last lines of ${file}\n${lines.join("\n")}`);
    }
    return false;
  } finally {
    printTable(rows, opts.out);
    opts.out(
      ok ? `\nall ${rows.length} scenarios passed in ${elapsed()}` : `\nthe demo failed after ${elapsed()}`,
    );
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    if (opts.keep && ok) {
      opts.out(`\ndashboard: ${dashboardUrl}`);
      opts.out(`\nThe demo keeps running. Look inside:
  NSM_CERT_FILE=${identities.files("nsc-remote").certFile} \\
  NSM_KEY_FILE=${identities.files("nsc-remote").keyFile} \\
  NSM_CA_FILE=${identities.files("nsc-remote").caFile} \\
    nsm connections --url unix://${join(dir, "a1", "nsm.sock")}   # what nsc-remote may see
  ip netns exec ${t.pods["pod-a1"]} ip addr          # the pod's NSM interfaces
  ip netns exec ${t.nodes[0]!.ns} bridge fdb show     # the emulated vRouter's VXLAN flood list
  ls ${join(dir, "logs")}                              # every component's log
Remove everything with: nsm demo down`);
    } else {
      await teardown(state);
    }
  }
}

/** Cloud services (registries, TF config APIs, the internet's web server), TF provisioning, every node. */
async function startServices(run: DemoRun): Promise<void> {
  const { t, procs, dir, env, sock, say } = run;
  for (const n of t.nodes) mkdirSync(join(dir, n.name), { recursive: true });
  // Cloud services: registries, TF config APIs, the internet's web server.
  const cloud = (c: "a" | "b", gw: string, ip: string, computes: DemoNode[]) => [
    procs.start({
      name: `registry-${c}`,
      netns: gw,
      args: [
        "registry",
        "--name",
        `registry-${c}`,
        "--listen-on",
        // The unix socket: what the dashboard (root namespace) watches, with no route into the clouds. First:
        // a unix listener bound after a tcp one never gets the TLS context (core/fdpass/server.ts's watcher
        // is added after the credentials delivered it), and refuses every connection.
        `${registrySock(dir, c)},tcp://${ip}:5002`,
        "--db",
        join(dir, `registry-${c}.db`),
      ],
      ready: "registry serving",
      env,
    }),
    procs.start({
      name: `tf-config-${c}`,
      netns: gw,
      args: [
        "tf-emulator",
        "config",
        "--listen",
        `${ip}:8082`,
        "--unix-socket",
        join(dir, `vnc-${c}.sock`),
        "--state-file",
        join(dir, `vnc-${c}.json`),
        ...computes.flatMap((n) => ["--compute", `${n.name}=${n.ip}`]),
      ],
      ready: "tf config API emulator ready",
      env,
    }),
  ];
  const nodesOf = (c: "a" | "b"): DemoNode[] => t.nodes.filter((n) => n.cloud === c);
  await Promise.all([
    ...cloud("a", t.gwA, gwAIp, nodesOf("a")),
    ...cloud("b", t.gwB, gwBIp, nodesOf("b")),
    ...[internetIp, `[${internetIp6}]`].map((ip, i) =>
      procs.start({
        name: `web-internet${i === 0 ? "" : "6"}`,
        netns: t.inet,
        args: ["demo", "web-server", "--listen", `${ip}:80`, "--name", "the internet"],
        ready: "web server ready",
        env,
      }),
    ),
  ]);
  say(`registries, TF config APIs and the internet's web server (${internetIp}, ${internetIp6}) up`);
  await provision(dir);
  say(
    "TF provisioned: VN external (SNAT via logical router, floating IPs from public), VN public (dual stack, routed), VN stretch (dual stack) in both clouds",
  );

  await Promise.all(t.nodes.map((n) => startNode(procs, t, n, sock, dir, env)));
  say(
    "every node up: nsmgr, kernel forwarder, TF forwarder, vRouter agent, tf-vn endpoint; icmp-responder on a2",
  );
}

/** The demo's dashboard's identity: every nsmgr lets it see all connections. */
const dashboardId = `spiffe://${demoTrustDomain}/dashboard`;

const registrySock = (dir: string, cloud: "a" | "b"): string =>
  `unix://${join(dir, `registry-${cloud}.sock`)}`;

/**
 * `nsm dashboard` in the root namespace on 127.0.0.1 (a free port), watching both clouds' registries and every
 * nsmgr over their unix sockets: no route into the demo's namespaces. Resolves with its URL.
 */
async function startDashboard(run: DemoRun): Promise<string> {
  const { t, procs, dir, env, sock, say } = run;
  const { proc, lines } = await procs.start({
    name: "dashboard",
    args: [
      "dashboard",
      "--name",
      "dashboard",
      "--registry-url",
      `${registrySock(dir, "a")},${registrySock(dir, "b")}`,
      "--nsmgr-url",
      t.nodes.map((n) => `nsmgr-${n.name}=${sock(n.name, "nsm")}`).join(","),
      // The nsmgrs' public URLs are inside the clouds: the unix sockets above stand for them.
      "--discover-nsmgrs",
      "false",
      "--listen-on",
      "127.0.0.1:0",
    ],
    ready: "dashboard ready",
    env,
  });
  const url = lines
    .map((l) => (l.startsWith("{") ? (JSON.parse(l) as { msg?: string; urls?: string[] }) : {}))
    .find((r) => r.msg === "dashboard ready")?.urls?.[0];
  if (!url) throw new DemoStepError("dashboard: ready, but its log names no URL", proc.log);
  say(`dashboard serving at ${url}`);
  return url;
}

/** One nsc process per scenario, all at once; resolves with each one's connection. */
async function startClients(run: DemoRun): Promise<Clients> {
  const { t, procs, dir, env, sock } = run;
  // Clients: one nsc process per scenario, all at once.
  const nsc = async (name: string, node: DemoNode, pod: string, service: string): Promise<Conn> => {
    const { lines } = await procs.start({
      name,
      netns: node.ns,
      args: [
        "nsc",
        "--name",
        name,
        "--connect-to",
        sock(node.name, "nsm"),
        "--netns",
        netnsPath(pod),
        "--service",
        service,
        "--labels",
        `nodeName=${node.name}`,
      ],
      ready: "nsc connected",
      env: { ...env, NODE_NAME: node.name },
      timeoutMs: 30_000,
    });
    const conn = lines
      .map((l) => (l.startsWith("{") ? (JSON.parse(l) as Partial<Conn>) : {}))
      .find((c) => c.service !== undefined);
    if (!conn)
      throw new DemoStepError(
        `${name}: connected but printed no connection`,
        join(dir, "logs", `${name}.log`),
      );
    return conn as Conn;
  };
  const [a1, a2, b1] = t.nodes as [DemoNode, DemoNode, DemoNode];
  const [local, remote, snat, fip, pub, strA, strB] = await Promise.all([
    nsc("nsc-local", a2, t.pods["pod-a2"]!, "kernel://icmp/nsm-icmp"),
    nsc("nsc-remote", a1, t.pods["pod-a1"]!, "kernel://icmp/nsm-icmp"),
    nsc("nsc-snat", a1, t.pods["pod-a1"]!, "kernel://external/nsm-ext"),
    nsc("nsc-fip", a1, t.pods["web-a1"]!, "kernel://external-fip/nsm-fip"),
    nsc("nsc-public", a2, t.pods["pod-a2"]!, "kernel://public/nsm-pub"),
    nsc("nsc-stretch-a", a1, t.pods["pod-a1"]!, "kernel://stretch/nsm-str"),
    nsc("nsc-stretch-b", b1, t.pods["pod-b1"]!, "kernel://stretch/nsm-str"),
  ]);

  return { local, remote, snat, fip, pub, strA, strB };
}

/** Proves each scenario with traffic; a row per scenario, and throws at the first that fails. */
async function proveScenarios(run: DemoRun, conns: Clients, rows: Row[]): Promise<void> {
  const { t, procs, env } = run;
  const { local, remote, snat, fip, pub, strA, strB } = conns;
  const v6 = (ips: string[] | undefined): string => host((ips ?? []).find((a) => a.includes(":")));
  const setup = (c: Conn): string => (c.setupMs === undefined ? "" : `${c.setupMs.toFixed(0)} ms`);
  const pings = async (pod: string, src: string, dst: string): Promise<string> => {
    const r = await ping(netnsPath(pod), { src, dst, count: 3, timeoutMs: 3000, stopAfterReplies: 2 });
    if (r.received === 0) throw new Error(`no reply from ${dst}`);
    return `ping ${r.received}/${r.sent}, ${Math.min(...r.rttMs).toFixed(2)} ms`;
  };
  const check = async (row: Omit<Row, "result">, fn: () => Promise<string>): Promise<void> => {
    try {
      rows.push({ ...row, result: `ok: ${await fn()}` });
    } catch (err) {
      rows.push({ ...row, result: `FAILED: ${(err as Error).message}` });
      throw err;
    }
  };
  await check(
    {
      scenario: "pod → pod, same node",
      path: "pod-a2 ─veth─ icmp-responder (a2)",
      addresses: `${host(local.srcIps[0])} → ${host(local.dstIps[0])}`,
      setup: setup(local),
    },
    () => pings(t.pods["pod-a2"]!, host(local.srcIps[0]), host(local.dstIps[0])),
  );
  await check(
    {
      scenario: "pod → pod, across nodes",
      path: "pod-a1 ─VXLAN over fabric A─ icmp-responder (a2)",
      addresses: `${host(remote.srcIps[0])} → ${host(remote.dstIps[0])}`,
      setup: setup(remote),
    },
    () => pings(t.pods["pod-a1"]!, host(remote.srcIps[0]), host(remote.dstIps[0])),
  );
  await check(
    {
      scenario: "pod → internet",
      path: "pod-a1 ─TF VN external─ SNAT instance (router's, on one node) ─ internet",
      addresses: `${host(snat.srcIps[0])} → ${internetIp}:80`,
      setup: setup(snat),
    },
    () => Promise.resolve().then(() => httpGet(t.pods["pod-a1"]!, `http://${internetIp}/`, "the internet")),
  );
  await check(
    {
      scenario: "pod → internet (IPv6)",
      path: "pod-a2 ─TF VN public (routed, no NAT)─ internet",
      addresses: `${v6(pub.srcIps)} → [${internetIp6}]:80`,
      setup: setup(pub),
    },
    () =>
      Promise.resolve().then(() => httpGet(t.pods["pod-a2"]!, `http://[${internetIp6}]/`, "the internet")),
  );
  const webIp = host(fip.srcIps[0]);
  const floating = fip.extra?.["tf.floating-ip"] ?? "";
  await procs.start({
    name: "web-pod",
    netns: t.pods["web-a1"]!,
    args: ["demo", "web-server", "--listen", `${webIp}:80`, "--name", "web-a1"],
    ready: "web server ready",
    env,
  });
  await check(
    {
      scenario: "internet → pod",
      path: "internet ─ floating IP (1:1 NAT) ─ TF VN external ─ web-a1",
      addresses: `${internetIp} → ${floating} (${webIp}):80`,
      setup: setup(fip),
    },
    () => Promise.resolve().then(() => httpGet(t.inet, `http://${floating}/`, "web-a1")),
  );
  await check(
    {
      scenario: "cloud A ↔ cloud B",
      path: "pod-a1 ─TF VN stretch (same RT/VNI) over the WAN─ pod-b1",
      addresses: `${host(strA.srcIps[0])} ↔ ${host(strB.srcIps[0])}`,
      setup: `${setup(strA)} / ${setup(strB)}`,
    },
    async () =>
      `${await pings(t.pods["pod-a1"]!, host(strA.srcIps[0]), host(strB.srcIps[0]))}; back ${await pings(t.pods["pod-b1"]!, host(strB.srcIps[0]), host(strA.srcIps[0]))}`,
  );
  await check(
    {
      scenario: "cloud A ↔ cloud B (IPv6)",
      path: "pod-a1 ─TF VN stretch, IPv6 subnet, over the WAN─ pod-b1",
      addresses: `${v6(strA.srcIps)} ↔ ${v6(strB.srcIps)}`,
      setup: `${setup(strA)} / ${setup(strB)}`,
    },
    async () =>
      `${await pings(t.pods["pod-a1"]!, v6(strA.srcIps), v6(strB.srcIps))}; back ${await pings(t.pods["pod-b1"]!, v6(strB.srcIps), v6(strA.srcIps))}`,
  );
}

async function startNode(
  procs: Procs,
  t: Topology,
  n: DemoNode,
  sock: (node: string, n: string) => string,
  dir: string,
  env: Record<string, string>,
): Promise<void> {
  const gw = n.cloud === "a" ? gwAIp : gwBIp;
  const peer = n.cloud === "a" ? gwBIp : gwAIp;
  const nsm = sock(n.name, "nsm");
  await Promise.all([
    procs.start({
      name: `tf-agent-${n.name}`,
      netns: n.ns,
      args: [
        "tf-emulator",
        "agent",
        "--hostname",
        n.name,
        "--config-url",
        `http://${gw}:8082`,
        "--peer-config-url",
        `http://${peer}:8082`,
        "--ports-root",
        join(dir, `ports-${n.name}`),
        "--sync-interval",
        "500ms",
      ],
      ready: "vRouter agent emulator ready",
      env,
    }),
    procs.start({
      name: `nsmgr-${n.name}`,
      netns: n.ns,
      args: [
        "nsmgr",
        "--name",
        `nsmgr-${n.name}`,
        "--listen-on",
        `${nsm},tcp://${n.ip}:5001`,
        "--registry-url",
        `tcp://${gw}:5002`,
      ],
      ready: "nsmgr ready",
      env: { ...env, NODE_NAME: n.name, NSM_MONITOR_SEE_ALL: dashboardId },
    }),
  ]);
  const services = n.cloud === "a" ? "external,external-fip,public,stretch" : "stretch";
  await Promise.all([
    procs.start({
      name: `fwd-kernel-${n.name}`,
      netns: n.ns,
      args: [
        "forwarder",
        "kernel",
        "--name",
        `fwd-kernel-${n.name}`,
        "--listen-on",
        sock(n.name, "fwd-kernel"),
        "--connect-to",
        nsm,
        "--tunnel-ip",
        n.ip,
      ],
      ready: "forwarder ready",
      env,
    }),
    procs.start({
      name: `fwd-tf-${n.name}`,
      netns: n.ns,
      args: [
        "forwarder",
        "tf",
        "--name",
        `fwd-tf-${n.name}`,
        "--listen-on",
        sock(n.name, "fwd-tf"),
        "--connect-to",
        nsm,
        "--port-dir",
        join(dir, `ports-${n.name}`, "vm"),
        "--poll-timeout",
        "100ms",
        "--poll-retries",
        "100",
      ],
      ready: "forwarder ready",
      env,
    }),
    procs.start({
      name: `nse-tf-${n.name}`,
      netns: n.ns,
      args: [
        "nse",
        "tf-vn",
        "--name",
        `nse-tf-${n.name}`,
        "--listen-on",
        sock(n.name, "nse-tf"),
        "--connect-to",
        nsm,
        "--node-name",
        n.name,
        "--vnc-url",
        `http://${gw}:8082`,
        "--services",
        services,
        "--vn",
        "external-fip=default-domain:k8s-default:external",
        "--fip-pool",
        "external-fip=default-domain:k8s-default:public:pool",
      ],
      ready: "endpoint ready",
      env,
    }),
    ...(n.name === "a2"
      ? [
          procs.start({
            name: "icmp-responder-a2",
            netns: n.ns,
            args: [
              "nse",
              "icmp-responder",
              "--name",
              "icmp-responder-a2",
              "--listen-on",
              sock(n.name, "icmp"),
              "--connect-to",
              nsm,
              "--services",
              "icmp",
              "--cidr",
              "169.254.100.0/24",
              "--netns",
              netnsPath(t.pods["icmp-a2"]!),
            ],
            ready: "endpoint ready",
            env,
          }),
        ]
      : []),
  ]);
}

/** The TF side of the demo, through each config API's unix socket (nothing leaves the namespaces). */
async function provision(dir: string): Promise<void> {
  const k8s = ["default-domain", "k8s-default"];
  const ipam = ["default-domain", "default-project", "default-network-ipam"];
  /** A subnet "prefix/len", with an allocation pool when given. */
  const subnet = (cidr: string, pool?: readonly [string, string]) => {
    const [prefix, len] = cidr.split("/");
    return {
      subnet: { ip_prefix: prefix, ip_prefix_len: Number(len) },
      ...(pool ? { allocation_pools: [{ start: pool[0], end: pool[1] }] } : {}),
    };
  };
  const vn = (subnets: ReturnType<typeof subnet>[], extra: Record<string, unknown> = {}) => ({
    parent_type: "project",
    network_ipam_refs: [{ to: ipam, attr: { ipam_subnets: subnets } }],
    ...extra,
  });
  // One route target and one configured VNI make `stretch` a single L2 network across both clouds; each
  // cloud allocates from its own pool of the shared subnet.
  const stretch = {
    route_target_list: { route_target: ["target:64512:7000"] },
    virtual_network_properties: { vxlan_network_identifier: 7000 },
  };
  for (const [c, pool, pool6] of [
    ["a", ["100.64.30.10", "100.64.30.99"], ["2001:db8:30::a:0", "2001:db8:30::a:ffff"]],
    ["b", ["100.64.30.100", "100.64.30.199"], ["2001:db8:30::b:0", "2001:db8:30::b:ffff"]],
  ] as const) {
    const vnc = new VncClient({ url: "http://tf-config", socketPath: join(dir, `vnc-${c}.sock`) });
    try {
      const g = await vnc.readByFqName("global-vrouter-config", [
        "default-global-system-config",
        "default-global-vrouter-config",
      ]);
      await vnc.update("global-vrouter-config", g.uuid, { vxlan_network_identifier_mode: "configured" });
      await vnc.create("virtual-network", {
        fq_name: [...k8s, "stretch"],
        ...vn([subnet("100.64.30.0/24", pool), subnet("2001:db8:30::/64", pool6)], stretch),
      });
      if (c === "a") {
        await vnc.create("virtual-network", {
          fq_name: [...k8s, "external"],
          ...vn([subnet("100.64.10.0/24")]),
        });
        await vnc.create("virtual-network", {
          fq_name: [...k8s, "public"],
          ...vn([subnet("198.51.100.0/24"), subnet(publicSubnet6)], { router_external: true }),
        });
        await vnc.create("floating-ip-pool", {
          fq_name: [...k8s, "public", "pool"],
          parent_type: "virtual-network",
        });
        await vnc.create("virtual-machine-interface", {
          fq_name: [...k8s, "lr-port-external"],
          parent_type: "project",
          virtual_machine_interface_device_owner: "network:router_interface",
          virtual_network_refs: [{ to: [...k8s, "external"] }],
        });
        await vnc.create("logical-router", {
          fq_name: [...k8s, "lr"],
          parent_type: "project",
          virtual_network_refs: [
            { to: [...k8s, "public"], attr: { logical_router_virtual_network_type: "ExternalGateway" } },
          ],
          virtual_machine_interface_refs: [{ to: [...k8s, "lr-port-external"] }],
        });
      }
    } finally {
      vnc.close();
    }
  }
}

function httpGet(netns: string, url: string, expect: string): string {
  const r = spawnSync("ip", ["netns", "exec", netns, process.execPath, nsmBin, "demo", "http-get", url], {
    encoding: "utf8",
    timeout: 10_000,
  });
  const body = (r.stdout ?? "").trim();
  if (r.status !== 0 || !body.includes(expect)) {
    throw new Error(`GET ${url}: ${(r.stderr ?? "").trim() || body || `exit ${r.status}`}`);
  }
  return `HTTP 200 "${body}"`;
}

function printTable(rows: Row[], out: (s: string) => void): void {
  if (rows.length === 0) return;
  const header: Row = {
    scenario: "scenario",
    path: "path",
    addresses: "addresses",
    setup: "setup",
    result: "result",
  };
  const keys = Object.keys(header) as (keyof Row)[];
  const width = Object.fromEntries(
    keys.map((k) => [k, Math.max(...[header, ...rows].map((r) => r[k].length))]),
  ) as Record<keyof Row, number>;
  const line = (r: Row): string =>
    keys
      .map((k) => r[k].padEnd(width[k]))
      .join("  ")
      .trimEnd();
  out("");
  out(line(header));
  out(keys.map((k) => "-".repeat(width[k])).join("  "));
  for (const r of rows) out(line(r));
}

/** Stops the demo's processes, deletes its namespaces and its directory. */
export async function teardown(state: DemoState): Promise<void> {
  await stopPids(state.pids, `NSM_DEMO=${state.prefix}`);
  for (const n of [...state.namespaces].reverse()) netnsDel(n);
  removeDemoFiles();
}

function isDemoProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("demo");
  } catch {
    return false;
  }
}

/** `nsm demo down`: everything a demo made, found from its state file and by its prefix. */
export async function demoDown(out: (s: string) => void): Promise<void> {
  const s = readState();
  // The demo process itself, if it still runs (its command line says `demo`), stops first.
  if (s && s.demoPid !== process.pid && isDemoProcess(s.demoPid)) await stopPids([s.demoPid], "\0demo");
  const pids = [...new Set([...(s?.pids ?? []), ...leftoverPids()])];
  await stopPids(pids, "NSM_DEMO=nsmd");
  const namespaces = [...new Set([...(s ? [...s.namespaces].reverse() : []), ...leftoverNamespaces()])];
  for (const n of namespaces) netnsDel(n);
  removeDemoFiles();
  out(
    namespaces.length + pids.length === 0
      ? "nsm demo down: nothing to remove"
      : `nsm demo down: stopped ${pids.length} processes, deleted ${namespaces.filter((n) => !leftoverNamespaces().includes(n)).length} namespaces and ${demoDir}`,
  );
}
