// Pieces every NSM hop shares: the endpoint prefix of its server chain (spec §2.1), and start/stop of its
// gRPC server.
import type { NetworkServiceEndpoint } from "../api/registry.js";
import type { NetworkServiceElement, NetworkServiceNext } from "../core/chain.js";
import { networkServiceService } from "../networkservice/server.js";
import type { RegistryClient } from "../registry/client.js";
import { Registration } from "../registry/registration.js";
import { registryCallMetadata } from "../registry/security.js";
import type { CallContext } from "../core/context.js";
import type { Logger } from "../core/log.js";
import { NsmServer, type RegisteredService } from "../core/grpc.js";
import { Begin, beginServer } from "../networkservice/begin/begin.js";
import { MonitorStore, monitorConnectionService, monitorServer } from "../networkservice/monitor/monitor.js";
import { metricsServer } from "../networkservice/metrics/metrics.js";
import { trackConnections } from "../networkservice/metrics/connections.js";
import { timeoutServer } from "../networkservice/timeout/timeout.js";
import { trimPathServer } from "../networkservice/trimpath/trimpath.js";
import { updatePathServer } from "../networkservice/updatepath/updatepath.js";
import type { Security } from "./security.js";

export interface HopPrefix {
  begin: Begin;
  monitor: MonitorStore;
  elements: NetworkServiceElement[];
  /** Stops counting the hop's connections in the live-connections gauge (the component's stop). */
  untrack(): void;
}

/**
 * metrics → updatepath → begin → updatetoken → authorize → timeout → monitor → trimpath (upstream's endpoint
 * prefix, metrics first so that it times the whole hop and counts refusals too). `component` is the hop kind
 * (nsmgr, forwarder, nse) its metrics are labelled with.
 */
export function endpointPrefix(
  component: string,
  name: string,
  log: Logger,
  security: Security,
  opts: { closeUnknown?: (ctx: CallContext) => boolean } = {},
): HopPrefix {
  const begin = beginServer(log, opts);
  const monitor = new MonitorStore();
  return {
    begin,
    monitor,
    untrack: trackConnections({ component, connections: () => begin.connections() }),
    elements: [
      metricsServer(component),
      updatePathServer(name),
      begin,
      security.updateToken(),
      security.authorize(),
      timeoutServer(),
      monitorServer(monitor),
      trimPathServer(),
    ],
  };
}

export async function serve(
  services: RegisteredService[],
  urls: string[],
  log: Logger,
  security: Security,
): Promise<NsmServer> {
  const server = new NsmServer(services, security.serverCredentials(), security.limits.server);
  try {
    for (const url of urls) await server.listen(url);
  } catch (err) {
    await server.stop(0);
    throw err;
  }
  log.info({ urls: server.urls }, "serving");
  return server;
}

/** Serves a hop that offers NetworkService and MonitorConnection on one URL (forwarders, endpoints). */
export function serveHop(
  networkService: NetworkServiceNext,
  prefix: HopPrefix,
  url: string,
  log: Logger,
  security: Security,
): Promise<NsmServer> {
  return serve(
    [
      networkServiceService(networkService, log),
      monitorConnectionService(prefix.monitor, log, security.limits.monitor),
    ],
    [url],
    log,
    security,
  );
}

/** A registration through the nsmgr that signs each call as this component. */
export function registrationOf(
  registry: RegistryClient,
  nse: NetworkServiceEndpoint,
  security: Security,
  log: Logger,
  again?: () => Promise<void>,
): Registration {
  return new Registration(
    registry,
    nse,
    log,
    async () =>
      registryCallMetadata(
        security.sign,
        undefined,
        nse.name,
        await security.audience(registry.grpc.url, registry.grpc),
      ),
    again,
  );
}

export { monitorConnectionService };
