// The heal scenarios, shared by the e2e suite (which asserts) and bench/heal (which reports): each breaks one
// thing while a probe pings across a live connection, waits until the client healed, and reports the outage.
import { existsSync } from "node:fs";
import type { Connection } from "../../src/api/connection.js";
import { HealMesh, Probe, host, type OutageReport } from "./healmesh.js";
import { ip, links } from "./netns.js";
import { eventually, runNsm, sleep } from "./proc.js";

export interface ScenarioResult extends OutageReport {
  scenario: string;
  kind: "restore" | "reselect" | "cleanup";
  heals: number;
  /** Heals by kind during the scenario. */
  restores: number;
  reselects: number;
  /** The endpoint before and after the heal. */
  from?: string;
  to?: string;
  detail: string;
}

type Action = (m: HealMesh, conn: Connection, pod: string) => Promise<void>;

/** Repairs a scenario leaves for after its measurement (an endpoint started again). */
const after: (() => Promise<void>)[] = [];

async function withTraffic(
  m: HealMesh,
  scenario: string,
  kind: "restore" | "reselect",
  service: string,
  action: Action,
): Promise<ScenarioResult> {
  const pod = m.net.add(`c${Math.random().toString(16).slice(2, 6)}`);
  const client = m.client(`nsc-${scenario.replace(/_/g, "-")}`, pod);
  try {
    const conn = await client.request({ service, ifname: "nsm-h" });
    const probe = new Probe(m.net.path(pod), conn);
    await sleep(300);
    const before = client.heal!.counts.restore + client.heal!.counts.reselect;
    const [restores0, reselects0] = [client.heal!.counts.restore, client.heal!.counts.reselect];
    await action(m, conn, pod);
    await eventually(
      () => client.heal!.counts.restore + client.heal!.counts.reselect > before,
      20_000,
      `${scenario}: the client healed`,
    );
    await sleep(500);
    const r = await probe.stop();
    const now = client.connections()[0];
    return {
      scenario,
      kind,
      ...r,
      from: conn.networkServiceEndpointName,
      to: now?.networkServiceEndpointName ?? "",
      heals: client.heal!.counts.restore + client.heal!.counts.reselect - before,
      restores: client.heal!.counts.restore - restores0,
      reselects: client.heal!.counts.reselect - reselects0,
      detail: `restores ${client.heal!.counts.restore}, reselects ${client.heal!.counts.reselect}; ${host(now?.context?.ipContext?.srcIpAddrs[0])} → ${host(now?.context?.ipContext?.dstIpAddrs[0])} at ${now?.networkServiceEndpointName ?? "?"}`,
    };
  } finally {
    await client.closeAll().catch(() => undefined);
    for (const repair of after.splice(0)) await repair();
  }
}

export const scenarios: { name: string; run: (m: HealMesh) => Promise<ScenarioResult> }[] = [
  {
    name: "local_nsmgr_restart",
    run: (m) => withTraffic(m, "local_nsmgr_restart", "restore", "local-svc", (mm) => mm.restart("nsmgr-1")),
  },
  {
    name: "remote_nsmgr_restart",
    run: (m) =>
      withTraffic(m, "remote_nsmgr_restart", "restore", "remote-svc", (mm) => mm.restart("nsmgr-2")),
  },
  {
    name: "local_forwarder_restart",
    run: (m) =>
      withTraffic(m, "local_forwarder_restart", "restore", "local-svc", (mm) => mm.restart("fwd-1")),
  },
  {
    name: "remote_forwarder_restart",
    run: (m) =>
      withTraffic(m, "remote_forwarder_restart", "restore", "remote-svc", (mm) => mm.restart("fwd-2")),
  },
  {
    name: "local_nse_restart",
    run: (m) =>
      withTraffic(m, "local_nse_restart", "restore", "local-svc", (mm, conn) =>
        mm.restart(conn.networkServiceEndpointName, 300),
      ),
  },
  {
    name: "remote_nse_restart",
    run: (m) =>
      withTraffic(m, "remote_nse_restart", "restore", "remote-svc", (mm, conn) =>
        // The endpoint that carries the connection (the service has two).
        mm.restart(conn.networkServiceEndpointName, 300),
      ),
  },
  {
    // The endpoint dies for good: after the restore window the client reselects onto the other endpoint.
    name: "remote_nse_death",
    run: (m) =>
      withTraffic(m, "remote_nse_death", "reselect", "remote-svc", async (mm, conn) => {
        const victim = conn.networkServiceEndpointName;
        await mm.procs.get(victim)!.kill();
        after.push(() => mm.run(victim).then(() => undefined));
      }),
  },
  {
    // The endpoint's pod is deleted (endpoint and data path gone): the first failed restore finds the data
    // path dead too and reselects at once onto the other endpoint.
    name: "remote_nse_pod_deleted",
    run: (m) =>
      withTraffic(m, "remote_nse_pod_deleted", "reselect", "remote-svc", async (mm, conn) => {
        const victim = conn.networkServiceEndpointName;
        const pod = victim === "nse-remote" ? "e2" : "e2b";
        await mm.procs.get(victim)!.kill();
        ip(["netns", "del", `${mm.net.prefix}-${pod}`]);
        after.push(async () => {
          mm.net.add(pod);
          await mm.run(victim);
        });
      }),
  },
  {
    // The operator changes the service so that only the other endpoint matches: the nsmgr closes the
    // connection and the client reselects onto the endpoint that matches now.
    name: "service_changed",
    run: (m) =>
      withTraffic(m, "service_changed", "reselect", "remote-svc", (mm, conn) => {
        const other = conn.networkServiceEndpointName === "nse-remote" ? "b" : "a";
        mm.applyService("remote-svc", [{ routes: [{ destination_selector: { site: other } }] }]);
        after.push(() => Promise.resolve(mm.applyService("remote-svc", [])));
        return Promise.resolve();
      }),
  },
  {
    name: "dataplane_broken",
    run: (m) =>
      withTraffic(m, "dataplane_broken", "reselect", "local-svc", (_mm, _c, pod) => {
        ip(["-n", pod, "link", "del", "nsm-h"]);
        return Promise.resolve();
      }),
  },
];

/** The registry restarts: live connections carry on, and new ones work again once endpoints re-registered. */
export async function registryRestart(m: HealMesh): Promise<ScenarioResult> {
  const pod = m.net.add(`r${Math.random().toString(16).slice(2, 6)}`);
  const client = m.client("nsc-registry", pod);
  try {
    const conn = await client.request({ service: "remote-svc", ifname: "nsm-h" });
    const probe = new Probe(m.net.path(pod), conn);
    await sleep(300);
    const t0 = performance.now();
    await m.restart("registry");
    const other = m.client("nsc-registry-new", pod);
    try {
      await eventually(
        async () =>
          other.request({ service: "remote-svc", ifname: "nsm-new" }).then(
            () => true,
            () => false,
          ),
        20_000,
        "a new connection after the registry restart",
      );
    } finally {
      await other.closeAll();
    }
    const newAfterMs = Math.round(performance.now() - t0);
    await sleep(300);
    const r = await probe.stop();
    return {
      scenario: "registry_restart",
      kind: "restore",
      ...r,
      heals: 0,
      restores: 0,
      reselects: 0,
      detail: `new connections work ${newAfterMs} ms after the restart`,
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
    kind: "cleanup",
    outageMs: 0,
    lost: 0,
    sent: 0,
    heals: 0,
    restores: 0,
    reselects: 0,
    detail: `the endpoint's interface went ${ms} ms after the namespace, the nsmgr's record ${everywhere} ms${existsSync(m.net.path(pod)) ? " (namespace still present!)" : ""}`,
  };
}
