// nsm-ts on a real two-node Kubernetes (scripts/k8s): SPIRE and the mesh from deploy/k8s, then the examples
// with real traffic: an injected client pings icmp-responder on its own node and on the other node, heals
// when its nsmgr pod is deleted, the registry keeps its state in custom resources across a restart, and
// `kubectl delete -k` leaves nothing of NSM behind. Run by `npm run test:k8s` (not by `npm test`).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  clusterWithMesh,
  nscConnection,
  type NscConnection,
  deleteAll,
  dumpLogs,
  execIn,
  kubectl,
  kubectlJson,
  nodeIp,
  pingsDone,
  pods,
  readyPods,
  replaceNodePod,
  script,
  startPings,
  type Pod,
} from "./cluster.js";

const deploy = new URL("../../deploy/k8s/", import.meta.url).pathname;

/** A pod with the annotations Prometheus' kubernetes_sd reads. */
interface Scrapable {
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: { containers: { name: string }[] };
}

/** GET http://127.0.0.1:<port><path> inside the pod's (first) container, as Prometheus would from outside. */
async function scrapeInPod(p: Scrapable, port: number, path: string): Promise<string> {
  const url = `http://127.0.0.1:${port}${path}`;
  return kubectl([
    "-n",
    p.metadata.namespace,
    "exec",
    p.metadata.name,
    "-c",
    p.spec.containers[0]!.name,
    "--",
    "/usr/bin/node",
    "-e",
    `fetch(${JSON.stringify(url)}).then(async (r) => { if (!r.ok) throw new Error("HTTP " + r.status); ` +
      `process.stdout.write(await r.text()); })`,
  ]);
}
const timings: Record<string, number> = {};

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    timings[what] = Math.round(performance.now() - t0);
    console.log(`# ${what}: ${(timings[what] / 1000).toFixed(1)} s`);
  }
}

const addr = (cidr: string): string => cidr.split("/")[0]!;

async function ping(ns: string, pod: string, ip: string, count = 3): Promise<string> {
  return execIn(ns, pod, "alpine", ["ping", "-c", String(count), "-W", "2", ip]);
}

/** Deploys an example and returns its client pod (Ready, with its connection) and endpoint pod. */
async function example(name: string): Promise<{ ns: string; client: Pod; nse: Pod; conn: NscConnection }> {
  const ns = `ns-${name}`;
  await kubectl(["apply", "-k", `${deploy}examples/${name}`]);
  const [nse] = await readyPods(ns, "app=nse-kernel", 1);
  const [client] = await readyPods(ns, "app=alpine", 1);
  assert.ok(
    client!.spec.containers.some((c) => c.name === "cmd-nsc"),
    "the admission webhook injected the NSC container",
  );
  const conn = await nscConnection(ns, "alpine");
  return { ns, client: client!, nse: nse!, conn };
}

/**
 * Pings the kernel2vxlan2kernel endpoint every 100 ms from its client while the client node's pod of `app`
 * (nsm-system) is deleted and replaced; the longest run of unanswered pings is the outage. Afterwards the
 * path must work.
 */
async function outageWhileReplacing(app: string): Promise<{ outageMs: number; answered: number }> {
  const ns = "ns-kernel2vxlan2kernel";
  const conn = await nscConnection(ns, "alpine");
  const [client] = await pods(ns, "app=alpine");
  const dst = addr(conn.dstIps[0]!);
  const file = "/tmp/heal.log";
  await startPings(ns, "alpine", "alpine", dst, { intervalS: 0.1, seconds: 30, file });
  await new Promise((r) => setTimeout(r, 3000));
  await timed(`${app} replaced`, () => replaceNodePod(app, client!.spec.nodeName!));
  const { sent, answered, longestGap } = await pingsDone(ns, "alpine", "alpine", file, 60_000);
  const outageMs = longestGap * 100;
  timings[`${app} delete: longest ping gap`] = outageMs;
  console.log(`# ${app} delete: ${sent} pings sent, ${answered} answered, longest gap ${outageMs} ms`);
  try {
    assert.match(await ping(ns, "alpine", dst), /3 packets received/);
  } catch (err) {
    await dumpLogs(["nsm-system", ns]);
    throw err;
  }
  return { outageMs, answered };
}

describe("nsm-ts on Kubernetes (two nodes)", { timeout: 30 * 60_000 }, () => {
  before(() => clusterWithMesh(timed));

  after(async () => {
    console.log(`# timings (ms): ${JSON.stringify(timings)}`);
    if (process.env.NSM_K8S_KEEP === "1") return;
    await script("down.sh");
  });

  it("kernel2kernel: an annotated pod pings icmp-responder on its own node through nsm-1", async () => {
    const { ns, client, nse, conn } = await timed("kernel2kernel connected", () => example("kernel2kernel"));
    assert.equal(client.spec.nodeName, nse.spec.nodeName);
    assert.equal(conn.service, "icmp-responder");
    const link = await execIn(ns, "alpine", "alpine", ["ip", "addr", "show", "nsm-1"]);
    assert.match(link, new RegExp(`inet ${addr(conn.srcIps[0]!)}`));
    assert.match(await ping(ns, "alpine", addr(conn.dstIps[0]!)), /3 packets received/);
  });

  it("kernel2vxlan2kernel: an annotated pod pings icmp-responder on the other node through nsm-1", async () => {
    const { ns, client, nse, conn } = await timed("kernel2vxlan2kernel connected", () =>
      example("kernel2vxlan2kernel"),
    );
    assert.notEqual(client.spec.nodeName, nse.spec.nodeName);
    assert.match(await ping(ns, "alpine", addr(conn.dstIps[0]!)), /3 packets received/);
  });

  it("every nsm-ts pod serves Prometheus metrics at the port its annotation names", async () => {
    // The pods Prometheus' kubernetes_sd would pick (docs/observability.md): annotated prometheus.io/scrape.
    const annotated = (
      await Promise.all(
        ["nsm-system", "ns-kernel2kernel", "ns-kernel2vxlan2kernel"].map((ns) =>
          kubectlJson<{ items: Scrapable[] }>(["-n", ns, "get", "pods"]),
        ),
      )
    )
      .flatMap((l) => l.items)
      .filter((p) => p.metadata.annotations?.["prometheus.io/scrape"] === "true");
    const apps = new Set(annotated.map((p) => p.metadata.labels?.app));
    for (const app of ["registry", "nsmgr", "forwarder-kernel", "forwarder-tf", "tf-vn", "nse-kernel"])
      assert.ok(
        apps.has(app),
        `a pod of ${app} is annotated for Prometheus (annotated: ${[...apps].join(", ")})`,
      );
    const bodies = new Map<string, string>();
    for (const p of annotated) {
      const a = p.metadata.annotations!;
      const body = await scrapeInPod(
        p,
        Number(a["prometheus.io/port"]),
        a["prometheus.io/path"] ?? "/metrics",
      );
      assert.match(body, /^process_resident_memory_bytes \d/m, `${p.metadata.name}: Node's default metrics`);
      bodies.set(p.metadata.name, body);
    }
    const of = (app: string): string =>
      annotated
        .filter((p) => p.metadata.labels?.app === app)
        .map((p) => bodies.get(p.metadata.name)!)
        .join("\n");
    // The connections the examples above made went through both nodes' nsmgrs and forwarders.
    for (const component of ["nsmgr", "forwarder", "nse"] as const) {
      const app = { nsmgr: "nsmgr", forwarder: "forwarder-kernel", nse: "nse-kernel" }[component];
      assert.match(
        of(app),
        new RegExp(
          `^nsm_networkservice_calls_total\\{component="${component}",service="kernel2vxlan2kernel",` +
            `method="request",code="OK"\\} [1-9]`,
          "m",
        ),
        `${app} counted the kernel2vxlan2kernel Request`,
      );
    }
    assert.match(
      of("forwarder-kernel"),
      /^nsm_dataplane_netlink_request_duration_seconds_count\{op="newlink"\} [1-9]/m,
    );
    assert.match(of("registry"), /^nsm_registry_network_service_endpoints\{component="registry"\} [1-9]/m);
  });

  it("tf-internet: an annotated pod reaches the internet namespace through the emulated TF fabric", async () => {
    const ns = "ns-tf-internet";
    await timed("tf-internet connected", async () => {
      await kubectl(["apply", "-k", `${deploy}examples/tf-internet`]);
      await kubectl(
        ["-n", ns, "wait", "--for=condition=complete", "job/provision-vn-external", "--timeout=120s"],
        130_000,
      );
      await readyPods(ns, "app=alpine", 1);
    });
    const conn = await nscConnection(ns, "alpine");
    assert.equal(conn.service, "external");
    assert.match(conn.srcIps[0]!, /^100\.64\.200\./, "the pod's address comes from the TF VN's subnet");
    // The internet is reached through nsm-1 (TF), not the pod's cluster network: the internet answers only
    // the compute's fabric address, which TF's SNAT gives.
    const route = await execIn(ns, "alpine", "alpine", ["ip", "route", "get", "203.0.113.10"]);
    assert.match(route, /dev nsm-1/);
    assert.match(await ping(ns, "alpine", "203.0.113.10"), /3 packets received/);
  });

  it("the registry's state is custom resources: kubectl shows them and a restarted registry keeps them", async () => {
    const names = async (): Promise<string[]> =>
      (
        await kubectlJson<{ items: { metadata: { name: string } }[] }>(["-n", "nsm-system", "get", "nse"])
      ).items
        .map((i) => i.metadata.name)
        .sort();
    const before = await names();
    assert.ok(
      before.length >= 4,
      `NSEs (2 endpoints, 2 forwarders) as custom resources: ${before.join(", ")}`,
    );
    const services = await kubectl(["-n", "nsm-system", "get", "netsvc", "-o", "name"]);
    assert.match(services, /icmp-responder/);
    const [old] = await pods("nsm-system", "app=registry");
    await timed("registry restart", async () => {
      await kubectl(["-n", "nsm-system", "delete", "pod", old!.metadata.name, "--wait=true"]);
      await readyPods("nsm-system", "app=registry", 1);
    });
    assert.deepEqual(await names(), before);
    // The new registry answers Finds from what it loaded: ask it as the nsmgr (its SVID, its container).
    const [nsmgr] = await pods("nsm-system", "app=nsmgr");
    const listed = await kubectl([
      "-n",
      "nsm-system",
      "exec",
      nsmgr!.metadata.name,
      "--",
      "/usr/bin/node",
      "/app/bin/nsm.js",
      "registry",
      "nse",
      "list",
      "--registry-url",
      "tcp://registry:5002",
    ]);
    for (const n of before) assert.match(listed, new RegExp(n));
  });

  it("deleting the client's nsmgr pod heals the connection (outage measured)", async () => {
    const { outageMs, answered } = await outageWhileReplacing("nsmgr");
    assert.ok(answered > 0);
    // The data path stays (the forwarder holds it); the control plane heals through the new nsmgr.
    assert.ok(outageMs < 1000, `longest ping gap ${outageMs} ms`);
  });

  it("deleting the client's kernel forwarder pod: its successor adopts the connection (outage measured)", async () => {
    const { outageMs } = await outageWhileReplacing("forwarder-kernel");
    // One forwarder name per node: the new one adopts the links instead of failing on them.
    if (outageMs >= 1000) await dumpLogs(["nsm-system", "ns-kernel2vxlan2kernel"]);
    assert.ok(outageMs < 1000, `longest ping gap ${outageMs} ms`);
  });

  it("kubectl delete -k leaves no NSM link, namespace or custom resource behind", async () => {
    await timed("delete -k", () => deleteAll(["kernel2kernel", "kernel2vxlan2kernel", "tf-internet"]));
    const namespaces = await kubectl(["get", "namespaces", "-o", "name"]);
    assert.doesNotMatch(namespaces, /nsm-system|ns-kernel2|ns-tf-internet|tf-emulator|spire/);
    assert.doesNotMatch(await kubectl(["get", "crd", "-o", "name"]), /networkservicemesh\.io/);
    assert.equal((await kubectl(["get", "mutatingwebhookconfigurations", "-o", "name"])).trim(), "");
    for (const n of [1, 2] as const) {
      const links = await nodeIp(n, ["-d", "link", "show"]);
      assert.doesNotMatch(links, /alias nsm:/, `node${n} has no NSM link left`);
    }
  });
});
