// `nsm forwarder`: connects a client's leg to the endpoint's leg through a pluggable data plane (spec §2.3
// steps 4–5, §2.4). Chain, top to bottom:
//   endpoint prefix → discover → roundrobin → mechanisms{KERNEL, VXLAN} → nsmonitor → xconnect(data plane)
//   → the data plane's own outgoing elements (TF: tf/vm-ifname) → mechanismtranslation
//   → outgoing preferences → filtermechanisms → connect (NSE or remote nsmgr)
import type { NetworkServiceEndpoint } from "../api/registry.js";
import { chain, type NetworkServiceElement } from "../core/chain.js";
import type { FdTransceiver } from "../core/fdpass/socket.js";
import { ReceivedEndpointUrls } from "../registry/fdpass.js";
import { recvfdClient, recvfdServer } from "../networkservice/mechanisms/recvfd/recvfd.js";
import { sendfdClient, sendfdServer } from "../networkservice/mechanisms/sendfd/sendfd.js";
import { callerId } from "../security/caller.js";
import type { CallContext } from "../core/context.js";
import { componentLogger } from "../core/log.js";
import type { DataPlane } from "../forwarder/dataplane.js";
import { xconnect } from "../forwarder/xconnect.js";
import { measuredDataPlane } from "../forwarder/metrics.js";
import { clientUrl } from "../networkservice/clienturl/clienturl.js";
import { connect } from "../networkservice/connect/connect.js";
import { ClientPool } from "../networkservice/connect/pool.js";
import { discoverServer, type EndpointSource } from "../networkservice/discover/discover.js";
import { kernelServer } from "../networkservice/mechanisms/kernel.js";
import {
  filterMechanismsClient,
  mechanismTranslationClient,
  mechanismsServer,
  preferenceClient,
} from "../networkservice/mechanisms/mechanisms.js";
import { VniAllocator, vxlanServer } from "../networkservice/mechanisms/vxlan.js";
import { DownstreamMonitor } from "../networkservice/monitor/downstream.js";
import { roundRobinServer } from "../networkservice/roundrobin/roundrobin.js";
import { nsMonitorServer } from "../networkservice/nsmonitor/nsmonitor.js";
import { RegistryClient, endpoint, service } from "../registry/client.js";
import { RegistryReplica } from "../registry/replica.js";
import { endpointPrefix, registrationOf, serveHop } from "./common.js";
import type { Security } from "./security.js";

export interface ForwarderOptions {
  name: string;
  /** Where this forwarder listens (unix socket); it registers this URL through its nsmgr. */
  listenOn: string;
  nsmgrUrl: string;
  /** Labels the nsmgr selects forwarders by (select-forwarder); default p2p=true. */
  labels?: Record<string, string>;
  serviceName?: string;
  dataPlane: DataPlane;
  /** This node's underlay address for VXLAN tunnels. */
  tunnelIp: string;
  vxlanPort?: number;
  /** Elements of the data plane's own that run on the way to the next hop (after xconnect). */
  outgoing?: NetworkServiceElement[];
  security: Security;
}

export interface RunningForwarder {
  url: string;
  connections(): number;
  stop(): Promise<void>;
}

/**
 * Endpoint lookups for discover: from a replica of the nsmgr's registry view when it is in sync (no round
 * trip per request), from the nsmgr when it is not or when the replica has not seen a record yet (an
 * endpoint that registered a moment ago).
 */
export function registryEndpointSource(
  client: RegistryClient,
  replica?: RegistryReplica,
  received?: ReceivedEndpointUrls,
): EndpointSource {
  return {
    findService: async (name) =>
      (replica?.ready ? replica.services.find(service({ name }))[0] : undefined) ??
      (await client.findServices({ name }, { timeoutMs: 5000 }))[0],
    findEndpoints: async (query) => {
      const local = replica?.ready ? replica.endpoints.find(endpoint(query)) : [];
      const ask = (): Promise<NetworkServiceEndpoint[]> => client.findEndpoints(query, { timeoutMs: 5000 });
      const found = local.length > 0 ? local : await ask();
      if (!received) return found;
      const usable = await received.resolve(found);
      // A passed socket not (or no longer) held: a fresh Find through the nsmgr passes it again.
      return usable.length < found.length && local.length > 0 ? received.resolve(await ask()) : usable;
    },
  };
}

export async function startForwarder(opts: ForwarderOptions): Promise<RunningForwarder> {
  const log = componentLogger("forwarder", opts.name);
  const serviceName = opts.serviceName ?? "forwarder";
  const dp = opts.dataPlane;
  const registry = new RegistryClient(
    opts.nsmgrUrl,
    opts.security.channelCredentials(opts.nsmgrUrl),
    opts.security.channelOptions(),
  );
  const pool = new ClientPool(
    (url) => opts.security.channelCredentials(url),
    opts.security.channelOptions(),
    {
      ...opts.security.limits.pool,
      callMetadata: (url) => opts.security.callMetadata(undefined, url),
    },
  );
  const replica = new RegistryReplica(registry, log);
  // Endpoints our nsmgr passes as descriptors (registered from another mount namespace) are dialled by them.
  const received = new ReceivedEndpointUrls(() => registry.grpc.fds);
  replica.start();
  // A Close of a connection this forwarder does not know stops here (begin), unless it comes from its own
  // nsmgr: then it is one lost in a restart, and its endpoint must hear of it. Insecure mode cannot tell who
  // calls and passes such Closes on, as before.
  const fromOwnNsmgr = (ctx: CallContext): boolean => {
    if (opts.security.insecure) return true;
    const nsmgr = opts.security.peerOf(opts.nsmgrUrl)?.spiffeId;
    return nsmgr !== undefined && callerId(ctx) === nsmgr;
  };
  const prefix = endpointPrefix("forwarder", opts.name, log, opts.security, {
    closeUnknown: fromOwnNsmgr,
  });
  const downstream = new DownstreamMonitor(pool, opts.name, prefix.monitor, log, (id) => {
    prefix.begin
      .closeInside(id)
      .catch((err: unknown) => log.warn({ connId: id, err }, "closing after the next hop closed failed"));
  });
  const vnis = new VniAllocator();
  const incoming = Object.fromEntries(
    dp.incoming.map((t) => [
      t,
      t === "VXLAN" ? vxlanServer(opts.tunnelIp, vnis, opts.vxlanPort) : kernelServer(),
    ]),
  );

  const nsmonitor = nsMonitorServer(log);
  const fdsOf = (url: string): FdTransceiver | undefined => pool.get(url).fds;
  const networkService = chain([
    ...prefix.elements,
    // The client's namespace arrives as a descriptor with the request, the endpoint's with its response.
    recvfdServer(),
    sendfdServer(),
    discoverServer(registryEndpointSource(registry, replica, received)),
    roundRobinServer(),
    mechanismsServer(incoming),
    // A data plane that plumbs nothing has no client namespace to lose.
    ...(dp.name === "noop" ? [] : [nsmonitor]),
    xconnect(measuredDataPlane(dp)),
    ...(opts.outgoing ?? []),
    mechanismTranslationClient(),
    preferenceClient("mechanisms/client", (ctx, req) => {
      const url = clientUrl(ctx) ?? "";
      return dp.outgoing(url.startsWith("tcp:") ? "REMOTE" : "LOCAL", req.connection!);
    }),
    filterMechanismsClient(),
    recvfdClient(fdsOf),
    sendfdClient(fdsOf),
    connect({
      pool,
      security: opts.security,
      onConnected: (url, conn) => downstream.track(url, conn),
      onClosed: (url, conn) => downstream.untrack(url, conn.id),
    }),
  ]);

  const server = await serveHop(networkService, prefix, opts.listenOn, log, opts.security);
  const url = server.urls[0]!;
  const registration = registrationOf(
    registry,
    endpoint({
      name: opts.name,
      networkServiceNames: [serviceName],
      networkServiceLabels: { [serviceName]: { labels: opts.labels ?? { p2p: "true" } } },
      url,
    }),
    opts.security,
    log,
  );
  try {
    await registration.start();
  } catch (err) {
    await server.stop(0);
    replica.stop();
    prefix.untrack();
    throw err;
  }
  log.info({ urls: [url], nsmgr: opts.nsmgrUrl, dataPlane: dp.name }, "forwarder ready");

  return {
    url,
    connections: () => prefix.begin.size,
    async stop() {
      nsmonitor.stop();
      await registration.stop();
      await server.stop();
      prefix.untrack();
      downstream.close();
      pool.close();
      replica.stop();
      registry.close();
      received.close();
    },
  };
}
