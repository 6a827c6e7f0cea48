// The local two-node cluster of scripts/k8s for the Kubernetes tests: bring it up and down, and run kubectl
// (and commands in its nodes' network namespaces) against it.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);
const repo = new URL("../..", import.meta.url).pathname;
const k8sDir = process.env.NSM_K8S_DIR ?? "/var/lib/nsm-ts-k8s";

export async function script(name: string, timeoutMs = 300_000): Promise<string> {
  const { stdout } = await run("bash", [`${repo}scripts/k8s/${name}`], {
    timeout: timeoutMs,
    maxBuffer: 64 << 20,
    env: { ...process.env },
  });
  return stdout;
}

/** The cluster's per-run prefix (its network namespaces are <prefix>-n1 and <prefix>-n2). */
function prefix(): string {
  return readFileSync(`${k8sDir}/cluster/prefix`, "utf8").trim();
}

export async function kubectl(args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await run(`${repo}scripts/k8s/kubectl`, args, {
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

export async function kubectlJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, "-o", "json"])) as T;
}

/** `ip …` in node N's network namespace. */
export async function nodeIp(node: 1 | 2, args: string[]): Promise<string> {
  const { stdout } = await run("ip", ["-n", `${prefix()}-n${node}`, ...args]);
  return stdout;
}

/** Polls `probe` until it returns a value (not undefined), or fails with what it last saw. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 120_000,
  everyMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err : new Error(String(err));
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Pod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { nodeName?: string; containers: { name: string }[] };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; ready: boolean; restartCount: number }[];
  };
}

const isReady = (p: Pod): boolean =>
  p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

export async function pods(namespace: string, selector?: string): Promise<Pod[]> {
  const args = ["-n", namespace, "get", "pods", ...(selector ? ["-l", selector] : [])];
  return (await kubectlJson<{ items: Pod[] }>(args)).items;
}

/** Waits until the pods matching `selector` are `count` and all Ready; returns them. */
export async function readyPods(
  namespace: string,
  selector: string,
  count: number,
  timeoutMs = 180_000,
): Promise<Pod[]> {
  return waitFor(
    `${count} ready pod(s) ${selector} in ${namespace}`,
    async () => {
      const ps = (await pods(namespace, selector)).filter((p) => p.status.phase !== "Succeeded");
      return ps.length === count && ps.every(isReady) ? ps : undefined;
    },
    timeoutMs,
  );
}

/** The injected NSC's first connection, as `nsm nsc` prints it (a JSON line on stdout). */
export interface NscConnection {
  id: string;
  service: string;
  endpoint: string;
  srcIps: string[];
  dstIps: string[];
  /** The Request's duration, as the NSC measured it. */
  setupMs: number;
}

/** Waits until the NSC sidecar (`cmd-nsc`) of `pod` has logged its first connection. */
export async function nscConnection(ns: string, pod: string, everyMs = 500): Promise<NscConnection> {
  return waitFor(
    `the NSC of ${ns}/${pod} to connect`,
    async () => {
      const logs = await kubectl(["-n", ns, "logs", pod, "-c", "cmd-nsc"]);
      for (const line of logs.split("\n")) {
        if (!line.startsWith("{")) continue;
        const c = JSON.parse(line) as Partial<NscConnection>;
        if (c.id && c.srcIps && c.srcIps.length > 0) return c as NscConnection;
      }
      return undefined;
    },
    120_000,
    everyMs,
  );
}

/** Runs `cmd` in a container of a pod. */
export function execIn(
  ns: string,
  pod: string,
  container: string,
  cmd: string[],
  timeoutMs?: number,
): Promise<string> {
  return kubectl(["-n", ns, "exec", pod, "-c", container, "--", ...cmd], timeoutMs);
}

/** Starts busybox `ping` in the background in a pod, every `intervalS` for `seconds`, logging to `file`. */
export async function startPings(
  ns: string,
  pod: string,
  container: string,
  dst: string,
  opts: { intervalS: number; seconds: number; file: string },
): Promise<void> {
  await execIn(ns, pod, container, [
    "sh",
    "-c",
    `rm -f ${opts.file}; setsid ping -i ${opts.intervalS} -w ${opts.seconds} ${dst} >${opts.file} 2>&1 </dev/null &`,
  ]);
}

/**
 * Waits for the background pings of startPings to end and reads them: pings sent, answered, and the longest
 * run of unanswered ones (counting one that lasts to the end).
 */
export async function pingsDone(
  ns: string,
  pod: string,
  container: string,
  file: string,
  timeoutMs: number,
): Promise<{ sent: number; answered: number; longestGap: number }> {
  const log = await waitFor(
    "the background pings to end",
    async () => {
      const l = await execIn(ns, pod, container, ["cat", file]);
      return /packets transmitted/.test(l) ? l : undefined;
    },
    timeoutMs,
    1000,
  );
  const seqs = [...log.matchAll(/seq=(\d+)/g)].map((m) => Number(m[1]));
  const sent = Number(/(\d+) packets transmitted/.exec(log)![1]);
  let longestGap = 0;
  let prev = -1;
  for (const s of [...seqs, sent]) {
    longestGap = Math.max(longestGap, s - prev - 1);
    prev = s;
  }
  return { sent, answered: seqs.length, longestGap };
}

/** Deletes `node`'s pod of `app` in nsm-system and waits until its replacement is Ready. */
export async function replaceNodePod(app: string, node: string): Promise<void> {
  const victim = (await pods("nsm-system", `app=${app}`)).find((p) => p.spec.nodeName === node);
  if (!victim) throw new Error(`no ${app} pod on ${node}`);
  await kubectl(["-n", "nsm-system", "delete", "pod", victim.metadata.name, "--wait=false"]);
  await waitFor(`a new ${app} on ${node}`, async () => {
    const fresh = (await pods("nsm-system", `app=${app}`)).find(
      (p) => p.spec.nodeName === node && p.metadata.name !== victim.metadata.name,
    );
    return fresh && isReady(fresh) ? fresh : undefined;
  });
}

const deployDir = new URL("../../deploy/k8s/", import.meta.url).pathname;
type Timed = (what: string, f: () => Promise<unknown>) => Promise<unknown>;

/**
 * Images, a fresh cluster (removing what a crashed run left), SPIRE, then nsm-ts with TF (the tf-emulator,
 * then the `tf` overlay: basic + forwarder-tf + tf-vn), until every pod is Ready and the webhook registered.
 */
export async function clusterWithMesh(timed: Timed): Promise<void> {
  await timed("images", () => script("images.sh"));
  await script("webhook-tls.sh");
  await script("down.sh");
  await timed("cluster up", () => script("up.sh"));
  await timed("SPIRE ready", async () => {
    await kubectl(["apply", "-k", `${deployDir}spire`]);
    await readyPods("spire", "app=spire-server", 1);
    await readyPods("spire", "app=spire-agent", 2);
  });
  await timed("nsm-ts ready", async () => {
    await kubectl(["apply", "-k", `${deployDir}tf-emulator`]);
    await kubectl(["apply", "-k", `${deployDir}tf`]);
    await readyPods("tf-emulator", "app=tf-agent", 2);
    for (const [app, n] of [
      ["registry", 1],
      ["nsmgr", 2],
      ["forwarder-kernel", 2],
      ["admission-webhook-k8s", 1],
      ["forwarder-tf", 2],
      ["tf-vn", 2],
    ] as const)
      await readyPods("nsm-system", `app=${app}`, n);
    await waitFor(
      "the webhook's MutatingWebhookConfiguration",
      async () => (await kubectl(["get", "mutatingwebhookconfigurations", "-o", "name"])).trim() || undefined,
    );
  });
}

/** `kubectl delete -k` of the examples, the mesh, the tf-emulator and SPIRE, in that order. */
export async function deleteAll(examples: string[]): Promise<void> {
  for (const ex of examples)
    await kubectl(
      ["delete", "-k", `${deployDir}examples/${ex}`, "--wait=true", "--ignore-not-found"],
      180_000,
    );
  for (const dir of ["tf", "tf-emulator", "spire"])
    await kubectl(["delete", "-k", `${deployDir}${dir}`, "--wait=true"], 180_000);
}

/**
 * Prints the warnings and errors (pino level ≥ 40) of every container of the pods in `namespaces`, previous
 * instances included, so a failed run carries the evidence of what went wrong.
 */
export async function dumpLogs(namespaces: string[]): Promise<void> {
  for (const ns of namespaces) {
    for (const p of await pods(ns).catch(() => [])) {
      for (const c of p.spec.containers) {
        for (const previous of [false, true]) {
          const args = ["-n", ns, "logs", p.metadata.name, "-c", c.name, ...(previous ? ["--previous"] : [])];
          const text = await kubectl(args).catch(() => "");
          const lines = text.split("\n").filter((l) => /"level":(4|5|6)\d/.test(l));
          if (lines.length === 0) continue;
          console.log(
            `# --- ${ns}/${p.metadata.name}/${c.name}${previous ? " (previous)" : ""} on ${p.spec.nodeName}`,
          );
          for (const l of lines.slice(-60)) console.log(`# ${l}`);
        }
      }
    }
  }
}
