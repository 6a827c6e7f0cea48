// Endpoints (NSEs): `startEndpoint` serves any chain behind the endpoint prefix and registers the endpoint
// (and optionally its services) through the nsmgr; `nsm nse icmp-responder` is the reference endpoint:
//   endpoint prefix → ipam → dnscontext → mechanisms{KERNEL (own namespace), NOOP}
import type { NetworkServiceElement } from "../core/chain.js";
import { chain } from "../core/chain.js";
import { componentLogger } from "../core/log.js";
import type { DNSConfig } from "../api/connectioncontext.js";
import type { Match } from "../api/registry.js";
import { dnsContextServer } from "../networkservice/dnscontext/dnscontext.js";
import { point2pointIpam, type IpamPolicy } from "../networkservice/ipam/ipam.js";
import { kernelServer } from "../networkservice/mechanisms/kernel.js";
import { sendfdServer } from "../networkservice/mechanisms/sendfd/sendfd.js";
import { mechanismsServer, passThrough } from "../networkservice/mechanisms/mechanisms.js";
import { RegistryClient, endpoint, service } from "../registry/client.js";
import { registryCallMetadata } from "../registry/security.js";
import { endpointPrefix, registrationOf, serveHop } from "./common.js";
import type { Security } from "./security.js";

export interface EndpointOptions {
  name: string;
  listenOn: string;
  nsmgrUrl: string;
  services: string[];
  /** Labels per service; every service gets these. */
  labels?: Record<string, string>;
  /** Register the NetworkServices too (upstream NSM_REGISTER_SERVICE, default true), with this payload. */
  registerServices?: boolean;
  payload?: string;
  /** Matches of the services it registers (e.g. select-forwarder labels, {{.nodeName}} destinations). */
  serviceMatches?: Match[];
  security: Security;
}

export interface RunningEndpoint {
  url: string;
  connections(): number;
  stop(): Promise<void>;
}

/** Serves `elements` as an NSE: the library entry point for endpoints written in TypeScript. */
export async function startEndpoint(
  opts: EndpointOptions,
  elements: NetworkServiceElement[],
): Promise<RunningEndpoint> {
  const log = componentLogger("nse", opts.name);
  const prefix = endpointPrefix("nse", opts.name, log, opts.security);
  // sendfd: a namespace the endpoint answers with as file:// goes back as a descriptor (on unix sockets).
  const networkService = chain([...prefix.elements, sendfdServer(), ...elements]);
  const server = await serveHop(networkService, prefix, opts.listenOn, log, opts.security);
  const url = server.urls[0]!;
  const registry = new RegistryClient(
    opts.nsmgrUrl,
    opts.security.channelCredentials(opts.nsmgrUrl),
    opts.security.channelOptions(),
  );
  const labels = opts.labels ?? {};
  const registration = registrationOf(
    registry,
    endpoint({
      name: opts.name,
      networkServiceNames: opts.services,
      networkServiceLabels: Object.fromEntries(opts.services.map((s) => [s, { labels }])),
      url,
    }),
    opts.security,
    log,
    // A registry that restarted without its store lost the services too.
    async () => {
      if (opts.registerServices ?? true)
        for (const s of opts.services) await ensureService(registry, s, opts);
    },
  );
  try {
    if (opts.registerServices ?? true) {
      for (const s of opts.services) await ensureService(registry, s, opts);
    }
    await registration.start();
  } catch (err) {
    await server.stop(0);
    registry.close();
    prefix.untrack();
    throw err;
  }
  log.info({ urls: [url], services: opts.services }, "endpoint ready");
  return {
    url,
    connections: () => prefix.begin.size,
    async stop() {
      await registration.stop();
      await server.stop();
      prefix.untrack();
      registry.close();
    },
  };
}

/**
 * Registers a NetworkService unless it exists. Endpoints of one service start concurrently: losing the race
 * to another endpoint (it now owns the name) is fine as long as the service exists afterwards.
 */
async function ensureService(registry: RegistryClient, name: string, opts: EndpointOptions): Promise<void> {
  if ((await registry.findServices({ name }, { timeoutMs: 5000 })).length > 0) return;
  try {
    await registry.registerService(
      service({ name, payload: opts.payload ?? "ETHERNET", matches: opts.serviceMatches ?? [] }),
      {
        metadata: await registryCallMetadata(
          opts.security.sign,
          undefined,
          opts.name,
          await opts.security.audience(registry.grpc.url, registry.grpc),
        ),
      },
    );
  } catch (err) {
    if ((await registry.findServices({ name }, { timeoutMs: 5000 })).length === 0) throw err;
  }
}

export interface IcmpResponderOptions extends EndpointOptions {
  cidrs: string[];
  /** DNS servers and search domains handed to clients. */
  dnsConfigs?: DNSConfig[];
  ipamPolicy?: IpamPolicy;
  /** The endpoint's network namespace (default: its own); its interface of each connection goes there. */
  netnsPath?: string;
}

export function startIcmpResponder(opts: IcmpResponderOptions): Promise<RunningEndpoint> {
  const ownNetns = `file://${opts.netnsPath ?? "/proc/self/ns/net"}`;
  return startEndpoint(opts, [
    point2pointIpam(opts.cidrs, { policy: opts.ipamPolicy ?? "polite" }),
    dnsContextServer(opts.dnsConfigs ?? []),
    mechanismsServer({ KERNEL: kernelServer({ ownNetns }), NOOP: passThrough("mechanisms/noop") }),
  ]);
}
