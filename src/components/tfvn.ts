// `nsm nse tf-vn`: the endpoint of network services backed by TF/OpenSDN virtual networks, one per node.
// Chain, top to bottom:
//   endpoint prefix → tfvn (VNC objects; TF's address, routes, MAC, ids in the context) → mechanisms{NOOP}
// It registers its services with one match, which says two things: clients are served by a forwarder
// labelled tf=true (NSM's select-forwarder, the match's metadata labels) and by the tf-vn endpoint of their
// own node (its route, {{.nodeName}}), whose virtual-router is the one the VM must be attached to.
import type { Match } from "../api/registry.js";
import { mechanismsServer, passThrough } from "../networkservice/mechanisms/mechanisms.js";
import { componentLogger } from "../core/log.js";
import { VncClient, type VncAuth } from "../forwarder/tf/vnc.js";
import { VnPorts } from "../forwarder/tf/vnports.js";
import { tfVnServer } from "../forwarder/tf/vnendpoint.js";
import { startEndpoint, type EndpointOptions, type RunningEndpoint } from "./endpoint.js";

export const tfForwarderLabels = { tf: "true" };

export interface TfVnEndpointOptions extends Omit<EndpointOptions, "serviceMatches"> {
  /** This node's name: its virtual-router's name and the endpoint's nodeName label. */
  nodeName: string;
  vncUrl: string;
  vncAuth?: VncAuth;
  /** service → VN fq-name; services not listed map to <project>:<service>. */
  vns?: Record<string, string[]>;
  /** Project of services without a mapping (default default-domain:k8s-default). */
  project?: string[];
  /** service → floating-ip-pool fq-name: clients of the service also get a floating IP. */
  fipPools?: Record<string, string[]>;
  defaultRoute?: "auto" | "always" | "never";
  /** Labels the TF forwarder is selected by (default tf=true). */
  forwarderLabels?: Record<string, string>;
  /**
   * After a start, TF objects of NSM connections on this node that no request claims within this long
   * (a previous incarnation's, whose clients are gone) are removed. Default 5 minutes; 0 disables.
   */
  orphanGraceMs?: number;
}

export interface RunningTfVnEndpoint extends RunningEndpoint {
  /** Connections whose TF objects are still waiting for a removal retry. */
  pendingRemovals(): number;
}

/** The NetworkService matches that route clients to their node's tf-vn endpoint through a TF forwarder. */
export function tfServiceMatches(forwarderLabels: Record<string, string> = tfForwarderLabels): Match[] {
  return [
    {
      sourceSelector: {},
      routes: [{ destinationSelector: { nodeName: "{{.nodeName}}" }, weight: 0 }],
      fallthrough: false,
      metadata: { labels: forwarderLabels },
    },
  ];
}

export async function startTfVnEndpoint(opts: TfVnEndpointOptions): Promise<RunningTfVnEndpoint> {
  const log = componentLogger("nse", opts.name);
  const vnc = new VncClient({ url: opts.vncUrl, auth: opts.vncAuth ?? { kind: "none" } });
  const project = opts.project ?? ["default-domain", "k8s-default"];
  const ports = new VnPorts(vnc, { vrouter: opts.nodeName, defaultRoute: opts.defaultRoute ?? "auto" }, log);
  const element = tfVnServer({
    ports,
    vnOf: (s) => opts.vns?.[s] ?? (opts.services.includes(s) ? [...project, s] : undefined),
    fipPoolOf: (s) => opts.fipPools?.[s],
  });
  let running: RunningEndpoint;
  try {
    running = await startEndpoint(
      {
        ...opts,
        labels: { ...opts.labels, nodeName: opts.nodeName },
        serviceMatches: tfServiceMatches(opts.forwarderLabels),
      },
      [element, mechanismsServer({ NOOP: passThrough("mechanisms/noop") })],
    );
  } catch (err) {
    vnc.close();
    throw err;
  }
  const grace = opts.orphanGraceMs ?? 5 * 60_000;
  let orphanTimer: NodeJS.Timeout | undefined;
  if (grace > 0) {
    // Closes that reached no endpoint while this one was down would otherwise leak TF objects for good.
    const found = await ports.connectionsHere().catch(() => [] as string[]);
    if (found.length > 0) {
      log.info({ connections: found.length, graceMs: grace }, "found TF ports of a previous incarnation");
      orphanTimer = setTimeout(() => {
        void (async () => {
          let removed = 0;
          for (const id of found) {
            if (element.holds(id)) continue;
            await ports.remove(id).then(
              () => removed++,
              (err: unknown) =>
                log.warn({ connId: id, err: (err as Error).message }, "removing an orphan failed"),
            );
          }
          log.info({ removed }, "orphaned TF ports removed");
        })();
      }, grace);
      orphanTimer.unref();
    }
  }
  return {
    ...running,
    pendingRemovals: () => element.pendingRemovals(),
    async stop() {
      clearTimeout(orphanTimer);
      await running.stop();
      vnc.close();
    },
  };
}
