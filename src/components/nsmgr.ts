// `nsm nsmgr`: admits local clients' requests, picks a forwarder, and proxies registry calls (spec §2.1, §4.1).
// Chains, top to bottom:
//   NetworkService: endpoint prefix → clientinfo → excludedprefixes → netsvcmonitor → discoverforwarder
//                   → connect (to the forwarder)
//   NSE registry:   metrics → validate → updatepath → updatetoken → authorize → expire → clientinfo → redial
//                   → localbypass → replica → connect (registry)   |   memory (no registry)
//   NS registry:    metrics → validate → updatepath → updatetoken → authorize → replica → connect | setpayload → memory
import {
  NetworkServiceEndpointResponse,
  NetworkServiceResponse,
  type NetworkService,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
  type NetworkServiceQuery,
} from "../api/registry.js";
import { chain } from "../core/chain.js";
import type { FdTransceiver } from "../core/fdpass/socket.js";
import { recvfdNSE, sendfdNSE } from "../registry/fdpass.js";
import { recvfdClient, recvfdServer } from "../networkservice/mechanisms/recvfd/recvfd.js";
import { sendfdClient, sendfdServer } from "../networkservice/mechanisms/sendfd/sendfd.js";
import { CallContext } from "../core/context.js";
import { componentLogger } from "../core/log.js";
import { asMessage, registryChain } from "../core/registrychain.js";
import { clientInfo, clientInfoLabels } from "../networkservice/clientinfo/clientinfo.js";
import { connect } from "../networkservice/connect/connect.js";
import { ClientPool } from "../networkservice/connect/pool.js";
import { discoverForwarderServer } from "../networkservice/discoverforwarder/discoverforwarder.js";
import { DownstreamMonitor } from "../networkservice/monitor/downstream.js";
import { networkServiceService } from "../networkservice/server.js";
import { RegistryClient, endpoint, service } from "../registry/client.js";
import {
  defaultPrefixesFile,
  excludedPrefixesServer,
  prefixesFromFile,
} from "../networkservice/excludedprefixes/excludedprefixes.js";
import {
  netsvcMonitorServer,
  type ServiceWatchSource,
} from "../networkservice/netsvcmonitor/netsvcmonitor.js";
import { clientInfoNSE } from "../registry/clientinfo.js";
import { connectNS, connectNSE } from "../registry/connect.js";
import { expire, setPayload, validateNS, validateNSE } from "../registry/elements.js";
import { redialNSE } from "../registry/redial.js";
import { LocalEndpoints, localBypassNSE } from "../registry/localbypass.js";
import { EndpointTable, ServiceTable, memoryNSEServer, memoryNSServer } from "../registry/memory.js";
import { nsRegistryService, nseRegistryService, type NSChain, type NSEChain } from "../registry/server.js";
import { MemoryStore } from "../registry/store/store.js";
import { RegistryReplica, replicaNS, replicaNSE } from "../registry/replica.js";
import { authorizeRegistry, registryCallMetadata, updateTokenRegistry } from "../registry/security.js";
import { updatePathServer } from "../registry/updatepath.js";
import { metricsNS, metricsNSE } from "../registry/metrics.js";
import { trackRecords } from "../registry/records.js";
import { endpointPrefix, monitorConnectionService, serve } from "./common.js";
import type { Security } from "./security.js";
import type { NSEServer, NSServer } from "../registry/types.js";

export interface NsmgrOptions {
  name: string;
  /** unix:// for local clients, endpoints and forwarders; tcp:// for remote nsmgrs and forwarders. */
  listenOn: string[];
  /** URL other nodes use to reach this nsmgr; defaults to the first tcp listen URL. */
  publicUrl?: string;
  /** Registry to proxy to; without one the nsmgr keeps an in-memory registry of its own. */
  registryUrl?: string;
  forwarderServiceName?: string;
  /** YAML `prefixes:` list of CIDRs endpoints must not hand out (cluster pod/service CIDRs). */
  excludedPrefixesFile?: string;
  expirePeriodMs?: number;
  security: Security;
}

export interface RunningNsmgr {
  urls: string[];
  publicUrl: string;
  connections(): number;
  stop(): Promise<void>;
}

export async function startNsmgr(opts: NsmgrOptions): Promise<RunningNsmgr> {
  const log = componentLogger("nsmgr", opts.name);
  const fwdService = opts.forwarderServiceName ?? "forwarder";
  let publicUrl = opts.publicUrl ?? "";

  // Channels to the next hops of Requests: forwarders, endpoints, other nsmgrs.
  const pool = new ClientPool(
    (url) => opts.security.channelCredentials(url),
    opts.security.channelOptions(),
    {
      ...opts.security.limits.pool,
      callMetadata: (url) => opts.security.callMetadata(undefined, url),
    },
  );

  // Registry side: proxy to the registry, or keep one in memory.
  const local = new LocalEndpoints();
  const registry = opts.registryUrl
    ? new RegistryClient(
        opts.registryUrl,
        opts.security.channelCredentials(opts.registryUrl),
        opts.security.channelOptions(),
      )
    : undefined;
  // With a registry, a local replica answers Finds (see RegistryReplica); without one, memory tables.
  const replica = registry ? new RegistryReplica(registry, log) : undefined;
  replica?.start();
  const mem = new MemoryStore();
  const sign = opts.security.sign;
  const upstreamMd = async (ctx: CallContext) =>
    registryCallMetadata(
      sign,
      ctx,
      opts.name,
      await opts.security.audience(registry!.grpc.url, registry!.grpc),
    );
  const endpoints = registry ? undefined : new EndpointTable(mem, log, opts.security.limits.registrations);
  const services = registry ? undefined : new ServiceTable(mem, opts.security.limits.registrations);
  // Who owns a name: the registry's record (through the replica) or our own table. The nsmgr authorizes
  // before anything is recorded or forwarded, as the registry will again.
  const nseOwner = (n: string): string[] | undefined =>
    (replica ? replica.endpoints.get(n) : endpoints!.get(n))?.pathIds;
  const nsOwner = (n: string): string[] | undefined =>
    (replica ? replica.services.get(n) : services!.get(n))?.pathIds;
  const nseTail: NSEServer[] = registry
    ? [replicaNSE(replica!), connectNSE(registry, upstreamMd)]
    : [memoryNSEServer(endpoints!)];
  const nsTail: NSServer[] = registry
    ? [replicaNS(replica!), connectNS(registry, upstreamMd)]
    : [setPayload(), memoryNSServer(services!)];
  const insecure = opts.security.insecure;
  const nseChain: NSEChain = registryChain<
    NetworkServiceEndpoint,
    NetworkServiceEndpointQuery,
    NetworkServiceEndpointResponse
  >([
    metricsNSE("nsmgr"),
    validateNSE(),
    updatePathServer(opts.name),
    updateTokenRegistry(sign, insecure, () => opts.security.identity.caPem),
    authorizeRegistry(nseOwner),
    expire(opts.expirePeriodMs ?? 60_000),
    recvfdNSE(),
    sendfdNSE(),
    clientInfoNSE(clientInfoLabels()),
    redialNSE(pool),
    localBypassNSE(local, () => publicUrl),
    ...nseTail,
  ]);
  const nsChain: NSChain = registryChain<NetworkService, NetworkServiceQuery, NetworkServiceResponse>([
    metricsNS("nsmgr"),
    validateNS(),
    updatePathServer(opts.name),
    updateTokenRegistry(sign, insecure, () => opts.security.identity.caPem),
    authorizeRegistry(nsOwner),
    ...nsTail,
  ]);

  const findService = async (name: string): Promise<NetworkService | undefined> => {
    let found: NetworkService | undefined;
    await nsChain.find({ networkService: service({ name }), watch: false }, CallContext.background(log), {
      send: (r) => {
        const m = asMessage(r, NetworkServiceResponse);
        if (!m.deleted) found ??= m.networkService;
      },
    });
    return found;
  };

  const serviceWatch: ServiceWatchSource = {
    watchService(name, signal, onChange) {
      const ctx = new CallContext(log, signal);
      ctx.internal = true;
      nsChain
        .find({ networkService: service({ name }), watch: true }, ctx, {
          send: (r) => {
            const m = asMessage(r, NetworkServiceResponse);
            onChange(m.deleted ? undefined : m.networkService);
          },
        })
        .catch((err: unknown) => {
          if (!signal.aborted) log.warn({ service: name, err }, "network service watch ended");
        });
    },
    async findEndpoint(name) {
      let found: NetworkServiceEndpoint | undefined;
      await nseChain.find(
        { networkServiceEndpoint: endpoint({ name }), watch: false },
        CallContext.background(log),
        {
          send: (r) => {
            const m = asMessage(r, NetworkServiceEndpointResponse);
            if (!m.deleted) found ??= m.networkServiceEndpoint;
          },
        },
      );
      return found;
    },
  };

  // Without a registry the nsmgr holds the records: they show in the registry gauges as its own.
  const untrackRecords =
    endpoints && services
      ? trackRecords({ component: "nsmgr", services: () => services.size, endpoints: () => endpoints.size })
      : () => undefined;

  // NetworkService side.
  const prefix = endpointPrefix("nsmgr", opts.name, log, opts.security);
  const downstream = new DownstreamMonitor(pool, opts.name, prefix.monitor, log, (id) => {
    prefix.begin
      .closeInside(id)
      .catch((err: unknown) => log.warn({ connId: id, err }, "closing after the next hop closed failed"));
  });
  const fdsOf = (url: string): FdTransceiver | undefined => pool.get(url).fds;
  const networkService = chain([
    ...prefix.elements,
    // Descriptors pass through the nsmgr as upstream's do: received with the request, sent on to the
    // forwarder; the response's likewise back to the client.
    recvfdServer(),
    sendfdServer(),
    clientInfo(clientInfoLabels()),
    excludedPrefixesServer(prefixesFromFile(opts.excludedPrefixesFile ?? defaultPrefixesFile, log)),
    netsvcMonitorServer(serviceWatch, log),
    discoverForwarderServer({
      findService,
      forwarders: () => local.ofService(fwdService),
      forwarderServiceName: fwdService,
    }),
    recvfdClient(fdsOf),
    sendfdClient(fdsOf),
    connect({
      pool,
      security: opts.security,
      onConnected: (url, conn) => downstream.track(url, conn),
      onClosed: (url, conn) => downstream.untrack(url, conn.id),
    }),
  ]);

  const server = await serve(
    [
      networkServiceService(networkService, log),
      monitorConnectionService(prefix.monitor, log, opts.security.limits.monitor),
      nseRegistryService(nseChain, log, opts.security.limits.registry),
      nsRegistryService(nsChain, log, opts.security.limits.registry),
    ],
    opts.listenOn,
    log,
    opts.security,
  );
  publicUrl ||= server.urls.find((u) => u.startsWith("tcp://")) ?? server.urls[0]!;
  log.info({ urls: server.urls, publicUrl, registry: opts.registryUrl ?? "in-memory" }, "nsmgr ready");

  return {
    urls: server.urls,
    publicUrl,
    connections: () => prefix.begin.size,
    async stop() {
      await server.stop();
      prefix.untrack();
      untrackRecords();
      downstream.close();
      pool.close();
      replica?.stop();
      registry?.close();
      endpoints?.close();
    },
  };
}
