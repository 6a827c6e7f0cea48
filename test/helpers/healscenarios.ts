// The heal scenarios, shared by the e2e suite (which asserts) and bench/heal (which reports): each breaks one
// thing while a probe pings across a live connection, waits until the client healed, and reports the outage,
// the kind of heal the client's counters show, and how long the control plane was out for the connection.
import { existsSync } from "node:fs";
import type { Connection } from "../../src/api/connection.js";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import type { HealEvent } from "../../src/networkservice/heal/heal.js";
import { HealMesh, Probe, addrsOf, host, type OutageReport } from "./healmesh.js";
import { gatewayTarget, type TfCluster, type TfNode } from "./tfcluster.js";
import { ip, links } from "./netns.js";
import { eventually, runNsm, sleep } from "./proc.js";

/** A heal as the client's counters tell it: any reselect makes it one; restores alone a restore; or none. */
export type HealKind = "restore" | "reselect" | "none";

export interface ScenarioResult extends OutageReport {
  scenario: string;
  /** The kind of heal the scenario calls for. */
  expected: HealKind | "cleanup";
  /** The kind that happened, read from the client's heal counters (never from `expected`). */
  kind: HealKind | "cleanup";
  heals: number;
  /** Heals by kind during the scenario. */
  restores: number;
  reselects: number;
  /**
   * From the break (the kill) until the control plane served the connection again: the first heal of it
   * that succeeded. Undefined where no heal completed.
   */
  controlPlaneMs?: number;
  /** Why the run failed (the client never healed), when it did. */
  failed?: string;
  /** The endpoint before and after the heal. */
  from?: string;
  to?: string;
  detail: string;
}

export function healKind(restores: number, reselects: number): HealKind {
  return reselects > 0 ? "reselect" : restores > 0 ? "restore" : "none";
}

/** The heal counters of `client` as they stand: subtract two of these for what a scenario did. */
export function healCounts(client: NsmClient): { restores: number; reselects: number } {
  const c = client.heal!.counts;
  return { restores: c.restore, reselects: c.reselect };
}

/** Probes `client`'s (first) connection as it currently is, from inside `netnsPath`. */
export function probeClient(netnsPath: string, client: NsmClient): Probe {
  return new Probe(netnsPath, () => addrsOf(client.connections()[0]));
}

type Action = (m: HealMesh, conn: Connection, pod: string) => Promise<void>;

/** Repairs a scenario leaves for after its measurement (an endpoint started again). */
const after: (() => Promise<void>)[] = [];

async function withTraffic(
  m: HealMesh,
  scenario: string,
  expected: "restore" | "reselect",
  service: string,
  action: Action,
): Promise<ScenarioResult> {
  const pod = m.net.add(`c${Math.random().toString(16).slice(2, 6)}`);
  const client = m.client(`nsc-${scenario.replace(/_/g, "-")}`, pod);
  try {
    const conn = await client.request({ service, ifname: "nsm-h" });
    const probe = probeClient(m.net.path(pod), client);
    await sleep(300);
    const c0 = healCounts(client);
    const healed0 = m.healed.length;
    const t0 = Date.now();
    await action(m, conn, pod);
    await eventually(
      () => {
        const c = healCounts(client);
        return c.restores + c.reselects > c0.restores + c0.reselects;
      },
      20_000,
      `${scenario}: the client healed`,
    );
    await sleep(500);
    const r = await probe.stop();
    const c = healCounts(client);
    const [restores, reselects] = [c.restores - c0.restores, c.reselects - c0.reselects];
    const first = m.healed.slice(healed0).find((e) => e.connId === conn.id);
    const now = client.connections()[0];
    return {
      scenario,
      expected,
      kind: healKind(restores, reselects),
      ...r,
      ...(first ? { controlPlaneMs: first.at - t0 } : {}),
      from: conn.networkServiceEndpointName,
      to: now?.networkServiceEndpointName ?? "",
      heals: restores + reselects,
      restores,
      reselects,
      detail: `restores ${restores}, reselects ${reselects}; now ${host(now?.context?.ipContext?.srcIpAddrs[0])} → ${host(now?.context?.ipContext?.dstIpAddrs[0])} at ${now?.networkServiceEndpointName ?? "?"}`,
    };
  } finally {
    await client.closeAll().catch(() => undefined);
    for (const repair of after.splice(0)) await repair();
  }
}

export interface Scenario {
  name: string;
  expected: "restore" | "reselect";
  run: (m: HealMesh) => Promise<ScenarioResult>;
}

const scenario = (
  name: string,
  expected: "restore" | "reselect",
  service: string,
  action: Action,
): Scenario => ({ name, expected, run: (m) => withTraffic(m, name, expected, service, action) });

export const scenarios: Scenario[] = [
  scenario("local_nsmgr_restart", "restore", "local-svc", (m) => m.restart("nsmgr-1")),
  scenario("remote_nsmgr_restart", "restore", "remote-svc", (m) => m.restart("nsmgr-2")),
  scenario("local_forwarder_restart", "restore", "local-svc", (m) => m.restart("fwd-1")),
  scenario("remote_forwarder_restart", "restore", "remote-svc", (m) => m.restart("fwd-2")),
  // Down for seconds (a rolling update): while the data path works the client keeps restoring, and the
  // restarted forwarder adopts the links its previous incarnation made. Nothing is lost.
  scenario("remote_forwarder_outage", "restore", "remote-svc", (m) => m.restart("fwd-2", 4000)),
  scenario("local_nse_restart", "restore", "local-svc", (m, conn) =>
    m.restart(conn.networkServiceEndpointName, 300),
  ),
  // The endpoint that carries the connection (the service has two).
  scenario("remote_nse_restart", "restore", "remote-svc", (m, conn) =>
    m.restart(conn.networkServiceEndpointName, 300),
  ),
  // The endpoint is down for seconds while its pod stays (the pod's interface keeps answering): restore.
  scenario("remote_nse_outage", "restore", "remote-svc", (m, conn) =>
    m.restart(conn.networkServiceEndpointName, 4000),
  ),
  // The endpoint's pod is deleted: the endpoint is stopped (SIGTERM: it unregisters) and its namespace
  // deleted. The forwarder's handle keeps that namespace, and the old interface answering, until the
  // connection moves; the restore finds the endpoint unregistered and reselects onto the other one.
  scenario("remote_nse_pod_deleted", "reselect", "remote-svc", async (m, conn) => {
    const victim = conn.networkServiceEndpointName;
    const pod = victim === "nse-remote" ? "e2" : "e2b";
    await m.procs.get(victim)!.stop();
    ip(["netns", "del", `${m.net.prefix}-${pod}`]);
    after.push(async () => {
      m.net.add(pod);
      await m.run(victim);
    });
  }),
  // The operator changes the service so that only the other endpoint matches: the nsmgr closes the
  // connection and the client reselects onto the endpoint that matches now.
  scenario("service_changed", "reselect", "remote-svc", (m, conn) => {
    const other = conn.networkServiceEndpointName === "nse-remote" ? "b" : "a";
    m.applyService("remote-svc", [{ routes: [{ destination_selector: { site: other } }] }]);
    after.push(() => Promise.resolve(m.applyService("remote-svc", [])));
    return Promise.resolve();
  }),
  scenario("dataplane_broken", "reselect", "local-svc", (_m, _c, pod) => {
    ip(["-n", pod, "link", "del", "nsm-h"]);
    return Promise.resolve();
  }),
];

/** Until a new client named `name` in `pod` gets a connection to `service` (then closes it); 20 s at most. */
async function untilServed(
  m: HealMesh,
  pod: string,
  name: string,
  service: string,
  ifname: string,
): Promise<void> {
  const c = m.client(name, pod);
  try {
    await eventually(
      () =>
        c.request({ service, ifname }).then(
          () => true,
          () => false,
        ),
      20_000,
      `${service} after the registry restart`,
    );
  } finally {
    await c.closeAll();
  }
}

/**
 * The registry restarts: live connections carry on untouched (no heal is needed), and new ones work again once
 * endpoints re-registered (`newConnectionMs`, from the kill).
 */
export async function registryRestart(m: HealMesh): Promise<ScenarioResult & { newConnectionMs: number }> {
  const pod = m.net.add(`r${Math.random().toString(16).slice(2, 6)}`);
  const client = m.client("nsc-registry", pod);
  try {
    await client.request({ service: "remote-svc", ifname: "nsm-h" });
    const probe = probeClient(m.net.path(pod), client);
    await sleep(300);
    const c0 = healCounts(client);
    const t0 = performance.now();
    await m.restart("registry");
    await untilServed(m, pod, "nsc-registry-new", "remote-svc", "nsm-new");
    const newConnectionMs = Math.round(performance.now() - t0);
    // The registry keeps nothing across the restart (memory store): each service is back once its endpoint
    // re-registered. Later scenarios need local-svc too, whose endpoint may refresh later than remote-svc's.
    await untilServed(m, pod, "nsc-registry-local", "local-svc", "nsm-loc");
    await sleep(300);
    const r = await probe.stop();
    const c = healCounts(client);
    const [restores, reselects] = [c.restores - c0.restores, c.reselects - c0.reselects];
    return {
      scenario: "registry_restart",
      expected: "none",
      kind: healKind(restores, reselects),
      ...r,
      heals: restores + reselects,
      restores,
      reselects,
      newConnectionMs,
      detail: `new connections work ${newConnectionMs} ms after the restart`,
    };
  } finally {
    await client.closeAll().catch(() => undefined);
  }
}

/** The client's namespace is deleted: the forwarder closes the connection everywhere (nsmonitor). */
export async function clientNetnsDeleted(m: HealMesh): Promise<ScenarioResult> {
  const pod = m.net.add(`g${Math.random().toString(16).slice(2, 6)}`);
  const client = m.client("nsc-gone", pod);
  await client.request({ service: "local-svc", ifname: "nsm-gone" });
  const before = links(m.e1).length;
  const t0 = performance.now();
  // The pod is gone with its client (a deleted pod's nsc dies too): only the forwarder can notice.
  client.heal!.stop();
  ip(["netns", "del", pod]);
  await eventually(() => links(m.e1).length < before, 10_000, "the endpoint side of the connection removed");
  const ms = Math.round(performance.now() - t0);
  // …and every hop forgot it: the forwarder closed it, and the nsmgr followed its DELETE.
  await eventually(
    async () => !(await runNsm(["connections", "--url", m.sock("nsmgr-1")])).stdout.includes("nsc-gone"),
    10_000,
    "the nsmgr to forget the connection",
  );
  const everywhere = Math.round(performance.now() - t0);
  await client.closeAll().catch(() => undefined);
  return {
    scenario: "client_netns_deleted",
    expected: "cleanup",
    kind: "cleanup",
    outageMs: 0,
    lost: 0,
    sent: 0,
    flowsAtEnd: false,
    heals: 0,
    restores: 0,
    reselects: 0,
    detail: `the endpoint's interface went ${ms} ms after the namespace, the nsmgr's record ${everywhere} ms${existsSync(m.net.path(pod)) ? " (namespace still present!)" : ""}`,
  };
}

/**
 * A TF connection (emulated cluster) under the probe while its TF forwarder is killed and restarted: the
 * forwarder adopts its ports, the client restores, and the data path never goes down.
 */
export async function tfForwarderRestart(
  cluster: TfCluster,
  node: TfNode,
  pod: string,
): Promise<ScenarioResult> {
  const healed: HealEvent[] = [];
  const client = new NsmClient({
    name: "nsc-tf-heal",
    nsmgrUrl: node.nsmgrSock,
    netnsPath: cluster.net.path(pod),
    labels: { nodeName: node.name },
    security: createSecurity({ name: "nsc-tf-heal", insecure: true }),
    heal: { onHealed: (e) => healed.push(e) },
  });
  try {
    const conn = await client.request({ service: "external", ifname: "nsm-tf" });
    const probe = new Probe(cluster.net.path(pod), gatewayTarget(client));
    await sleep(300);
    const t0 = Date.now();
    await node.procs.get("fwd-tf")!.kill();
    await cluster.startTfForwarder(node, 1, ["--orphan-grace", "10s"]);
    await eventually(() => healed.length > 0, 20_000, "the client healed the TF connection");
    await sleep(500);
    const r = await probe.stop();
    const { restores, reselects } = healCounts(client);
    const first = healed.find((e) => e.connId === conn.id);
    return {
      scenario: "tf_forwarder_restart",
      expected: "restore",
      kind: healKind(restores, reselects),
      ...r,
      ...(first ? { controlPlaneMs: first.at - t0 } : {}),
      heals: restores + reselects,
      restores,
      reselects,
      detail: `TF connection; restores ${restores}, reselects ${reselects}`,
    };
  } finally {
    await client.closeAll().catch(() => undefined);
  }
}
