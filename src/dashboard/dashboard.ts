// `nsm dashboard`, assembled: a watch per registry and per nsmgr (given, and discovered from the registry),
// the model rebuilt from what they hold, and the HTTP server that serves it. Changes that come together (a
// connection's UPDATE at two nsmgrs, a burst of registrations) are published once, after `debounceMs`.
import type { Security } from "../components/security.js";
import { componentLogger } from "../core/log.js";
import type { ListenAddress } from "../observability/metrics/address.js";
import { buildGraph, type MeshSnapshot } from "./graph.js";
import { discoveredTargets, type NsmgrTarget } from "./nsmgrs.js";
import { NsmgrWatch } from "./nsmgrwatch.js";
import { mergeRecords, registeredNsmgrs } from "./records.js";
import { RegistryWatch } from "./registrywatch.js";
import { startDashboardServer } from "./server.js";
import type { Graph } from "./types.js";

export interface DashboardOptions {
  name: string;
  registryUrls: string[];
  nsmgrs: NsmgrTarget[];
  /** Also watch the nsmgrs the registry names (at their public URLs) that no given target covers. */
  discoverNsmgrs: boolean;
  listen: ListenAddress;
  /** Jaeger UI base URL, for each connection's trace link. */
  traceUiUrl?: string;
  /** The service forwarders register as (default "forwarder"). */
  forwarderService?: string;
  security: Security;
  /** Changes within this many ms are published together (default 100). */
  debounceMs?: number;
}

export interface RunningDashboard {
  url: string;
  graph(): Graph;
  stop(): Promise<void>;
}

export async function startDashboard(opts: DashboardOptions): Promise<RunningDashboard> {
  const log = componentLogger("dashboard", opts.name);
  let version = 0;
  let timer: NodeJS.Timeout | undefined;
  // Set once the server listens: changes before then are in the first graph anyone fetches.
  const sink: { publish?: (g: Graph) => void } = {};
  let stopped = false;
  const changed = (): void => {
    if (stopped) return;
    timer ??= setTimeout(() => {
      timer = undefined;
      version++;
      if (opts.discoverNsmgrs) discover();
      sink.publish?.(current());
    }, opts.debounceMs ?? 100);
  };
  const registries = opts.registryUrls.map((url) => new RegistryWatch(url, opts.security, changed, log));
  const given = opts.nsmgrs.map((t) => new NsmgrWatch(t.url, t.name, opts.security, changed, log));
  const discovered = new Map<string, NsmgrWatch>();

  const snapshot = (): MeshSnapshot => ({
    registries: registries.map((r) => r.snapshot()),
    nsmgrs: [...given, ...discovered.values()].map((w) => w.snapshot()),
    forwarderService: opts.forwarderService ?? "forwarder",
    ...(opts.traceUiUrl ? { traceUiUrl: opts.traceUiUrl } : {}),
  });
  const current = (): Graph => buildGraph(snapshot(), version);

  /** Starts watches of newly registered nsmgrs, and stops those of nsmgrs no record names any more. */
  const discover = (): void => {
    const records = mergeRecords(
      registries.map((r) => r.snapshot()),
      Date.now(),
    );
    const covered = given.map((w) => ({ url: w.url, ...(w.name ? { name: w.name } : {}) }));
    const want = discoveredTargets(registeredNsmgrs(records.endpoints), covered);
    const wanted = new Set(want.map((t) => t.url));
    for (const [url, w] of discovered) {
      if (wanted.has(url)) continue;
      w.stop();
      discovered.delete(url);
      log.info({ url, nsmgr: w.name }, "nsmgr no longer in the registry: not watched");
    }
    for (const t of want) {
      if (discovered.has(t.url)) continue;
      const w = new NsmgrWatch(t.url, t.name, opts.security, changed, log);
      discovered.set(t.url, w);
      log.info({ url: t.url, nsmgr: t.name }, "nsmgr found in the registry: watching it");
      w.start();
    }
  };

  const server = await startDashboardServer(opts.listen, current);
  sink.publish = (g) => server.publish(g);
  for (const w of [...registries, ...given]) w.start();
  log.info(
    {
      urls: [server.url],
      registries: opts.registryUrls,
      nsmgrs: opts.nsmgrs.map((t) => (t.name ? `${t.name}=${t.url}` : t.url)),
      discover: opts.discoverNsmgrs,
    },
    "dashboard ready",
  );
  return {
    url: server.url,
    graph: current,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      for (const w of [...registries, ...given, ...discovered.values()]) w.stop();
      await server.stop();
    },
  };
}
