// `nsm nsmgr | forwarder | nse | nsc | connections`: start the NSM components, and look at connections.
import { hostname } from "node:os";
import type { Command } from "commander";
import { ConnectionEventType, MonitorConnectionService, State, type Connection } from "../api/connection.js";
import { GrpcClient } from "../core/client.js";
import { parseDuration } from "../core/duration.js";
import { startForwarder } from "../components/forwarder.js";
import { startIcmpResponder } from "../components/endpoint.js";
import { NsmClient, parseServiceUrl } from "../components/client.js";
import { startNsmgr } from "../components/nsmgr.js";
import { createSecurity, type Security } from "../components/security.js";
import { noopDataPlane } from "../forwarder/dataplane.js";
import { KernelDataPlane } from "../forwarder/kernel/kernel.js";
import { rootLogger } from "../core/log.js";
import { endpointSocketEnv, identityFromWorkloadApi } from "../security/workloadapi.js";
import { parseDnsConfigs } from "../networkservice/dnscontext/dnscontext.js";
import { table } from "./format.js";
import { env, listOf, stopOnSignals } from "./util.js";

export interface SecurityFlags {
  name: string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  trustDomains?: string;
  insecure?: boolean;
  allowInsecureNetwork?: boolean;
  maxTokenLifetime: string;
}

export function withSecurityFlags(cmd: Command, component: string): Command {
  return cmd
    .option(
      "--name <name>",
      "this component's name (NSM_NAME)",
      env("NSM_NAME", `${component}-${hostname()}`),
    )
    .option(
      "--cert-file <pem>",
      "X.509-SVID chain from a file (watched for rotation), with --key-file and --ca-file; default: the SPIFFE " +
        "Workload API at SPIFFE_ENDPOINT_SOCKET (NSM_CERT_FILE)",
      env("NSM_CERT_FILE"),
    )
    .option("--key-file <pem>", "private key of the certificate (NSM_KEY_FILE)", env("NSM_KEY_FILE"))
    .option("--ca-file <pem>", "trust bundle (NSM_CA_FILE)", env("NSM_CA_FILE"))
    .option(
      "--trust-domains <list>",
      "trust domains whose SVIDs may talk to this component, comma-separated; default: its own (NSM_TRUST_DOMAINS)",
      env("NSM_TRUST_DOMAINS"),
    )
    .option(
      "--insecure",
      "plaintext, unauthenticated: no SVID, tokens prove nothing; for tests only (NSM_INSECURE)",
      env("NSM_INSECURE") === "true",
    )
    .option(
      "--allow-insecure-network",
      "with --insecure, also listen on TCP addresses other than loopback (NSM_ALLOW_INSECURE_NETWORK)",
      env("NSM_ALLOW_INSECURE_NETWORK") === "true",
    )
    .option(
      "--max-token-lifetime <duration>",
      "lifetime of the tokens this component signs (NSM_MAX_TOKEN_LIFETIME)",
      env("NSM_MAX_TOKEN_LIFETIME", "10m"),
    );
}

/**
 * The component's security: an SVID from files or the Workload API, or insecure when asked for. Insecure
 * mode is logged as a warning, and refuses non-loopback TCP listeners without a second flag.
 */
export async function securityFrom(o: SecurityFlags, listenOn: string[] = []): Promise<Security> {
  const common = {
    name: o.name,
    tokenLifetimeMs: parseDuration(o.maxTokenLifetime, "--max-token-lifetime"),
    ...(o.trustDomains ? { trustDomains: listOf(o.trustDomains) } : {}),
  };
  const files = o.certFile || o.keyFile || o.caFile;
  if (o.insecure) {
    if (files) throw new Error("--insecure and --cert-file/--key-file/--ca-file exclude each other");
    const open = listenOn.filter(isNetworkListener);
    if (open.length > 0 && !o.allowInsecureNetwork)
      throw new Error(
        `--insecure: refusing to serve plaintext on ${open.join(", ")}: anyone who reaches it could act as any ` +
          `identity. Listen on unix:// or 127.0.0.1, or add --allow-insecure-network`,
      );
    rootLogger.warn(
      { component: o.name },
      "INSECURE: plaintext links, no SVID; callers are not authenticated and tokens prove nothing",
    );
    return createSecurity({ ...common, insecure: true });
  }
  if (files)
    return createSecurity({
      ...common,
      files: {
        certFile: need(o.certFile, "--cert-file"),
        keyFile: need(o.keyFile, "--key-file"),
        caFile: need(o.caFile, "--ca-file"),
      },
    });
  const socket = process.env[endpointSocketEnv];
  if (!socket)
    throw new Error(
      `no identity: set ${endpointSocketEnv} to the SPIFFE Workload API socket (e.g. unix:///run/spire/agent.sock), ` +
        `give --cert-file/--key-file/--ca-file, or run insecure explicitly with --insecure`,
    );
  const source = await identityFromWorkloadApi(socket, {
    onError: (err) => rootLogger.warn({ component: o.name, err: err.message }, "SPIFFE Workload API"),
  });
  rootLogger.info(
    { component: o.name, spiffeId: source.current().spiffeId },
    "X.509-SVID from the Workload API",
  );
  return createSecurity({ ...common, source });
}

/** A tcp:// listen URL on anything but loopback (an empty host is every interface). */
function isNetworkListener(url: string): boolean {
  const m = /^tcp:\/\/(\[[^\]]*\]|[^:/]*)/.exec(url);
  if (!m) return false;
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  return !(host === "localhost" || host === "::1" || /^127\./.test(host));
}

function need(v: string | undefined, flag: string): string {
  if (!v) throw new Error(`${flag} is required when any of --cert-file/--key-file/--ca-file is given`);
  return v;
}

/** Where a node-local component serves (`socket` under /var/lib/networkservicemesh) and its nsmgr. */
function servingFlags(cmd: Command, socket: string): Command {
  return cmd
    .option(
      "--listen-on <url>",
      "unix socket to serve on (NSM_LISTEN_ON)",
      env("NSM_LISTEN_ON", `unix:///var/lib/networkservicemesh/${socket}`),
    )
    .option(
      "--connect-to <url>",
      "this node's nsmgr (NSM_CONNECT_TO)",
      env("NSM_CONNECT_TO", "unix:///var/lib/networkservicemesh/nsm.io.sock"),
    );
}

/** Flags every endpoint kind has (after its security flags): where it serves, its nsmgr, its services. */
export function endpointFlags(cmd: Command, socket: string, services: string): Command {
  return servingFlags(cmd, socket).option(
    "--services <names>",
    "services served, comma-separated (NSM_SERVICE_NAMES)",
    env("NSM_SERVICE_NAMES", services),
  );
}

/** Flags every forwarder kind has: security, where it serves, its nsmgr, labels, service name, orphans. */
export function forwarderFlags(
  cmd: Command,
  socket: string,
  labels: string,
  component = "forwarder",
): Command {
  return servingFlags(withSecurityFlags(cmd, component), socket)
    .option(
      "--labels <k=v,...>",
      "forwarder labels for select-forwarder (NSM_LABELS)",
      env("NSM_LABELS", labels),
    )
    .option("--nsname <name>", "service name to register as (NSM_NSNAME)", env("NSM_NSNAME", "forwarder"))
    .option(
      "--orphan-grace <duration>",
      "after a restart, what no refresh claims within this is removed; longer than the clients' refresh period (≈ a fifth of the shortest token lifetime on the path) (NSM_ORPHAN_GRACE)",
      env("NSM_ORPHAN_GRACE", "5m"),
    );
}

export function labelsOf(text: string | undefined): Record<string, string> {
  if (!text) return {};
  return Object.fromEntries(
    listOf(text).map((kv) => {
      const i = kv.indexOf("=");
      if (i <= 0) throw new Error(`label "${kv}" is not key=value`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
}

export function componentCommands(program: Command): void {
  withSecurityFlags(program.command("nsmgr").description("run the per-node network service manager"), "nsmgr")
    .option(
      "--listen-on <urls>",
      "unix:///path and tcp://host:port, comma-separated (NSM_LISTEN_ON)",
      env("NSM_LISTEN_ON", "unix:///var/lib/networkservicemesh/nsm.io.sock,tcp://:5001"),
    )
    .option(
      "--public-url <url>",
      "tcp URL other nodes reach this nsmgr at (NSM_PUBLIC_URL)",
      env("NSM_PUBLIC_URL"),
    )
    .option(
      "--registry-url <url>",
      "registry to use; none = in-memory (NSM_REGISTRY_URL)",
      env("NSM_REGISTRY_URL"),
    )
    .option(
      "--forwarder-service <name>",
      "service name forwarders register as (NSM_FORWARDER_NETWORK_SERVICE_NAME)",
      env("NSM_FORWARDER_NETWORK_SERVICE_NAME", "forwarder"),
    )
    .option(
      "--excluded-prefixes-file <path>",
      "YAML `prefixes:` list endpoints must not hand out (NSM_EXCLUDED_PREFIXES_FILE)",
      env("NSM_EXCLUDED_PREFIXES_FILE"),
    )
    .action(
      async (
        o: SecurityFlags & {
          listenOn: string;
          publicUrl?: string;
          registryUrl?: string;
          forwarderService: string;
          excludedPrefixesFile?: string;
        },
      ) => {
        const running = await startNsmgr({
          name: o.name,
          listenOn: listOf(o.listenOn),
          publicUrl: o.publicUrl,
          registryUrl: o.registryUrl,
          forwarderServiceName: o.forwarderService,
          excludedPrefixesFile: o.excludedPrefixesFile,
          security: await securityFrom(o, listOf(o.listenOn)),
        });
        stopOnSignals(() => running.stop());
      },
    );

  const fwd = program.command("forwarder").description("run a forwarder");
  for (const kind of ["kernel", "noop"] as const) {
    forwarderFlags(
      fwd
        .command(kind)
        .description(
          kind === "kernel"
            ? "veth for local, VXLAN for remote connections"
            : "control plane only, no data plane (tests, benchmarks)",
        ),
      "forwarder.sock",
      "p2p=true",
    )
      .option(
        "--tunnel-ip <ip>",
        "this node's underlay IP, the local end of VXLAN tunnels (NSM_TUNNEL_IP)",
        env("NSM_TUNNEL_IP", "127.0.0.1"),
      )
      .option("--vxlan-port <port>", "VXLAN UDP port (NSM_VXLAN_PORT)", env("NSM_VXLAN_PORT", "4789"))
      .action(
        async (
          o: SecurityFlags & {
            listenOn: string;
            connectTo: string;
            labels: string;
            tunnelIp: string;
            vxlanPort: string;
            nsname: string;
            orphanGrace: string;
          },
        ) => {
          const port = Number(o.vxlanPort);
          if (!Number.isInteger(port) || port < 1 || port > 65535)
            throw new Error(`--vxlan-port: "${o.vxlanPort}" is not a port`);
          const kernel =
            kind === "kernel"
              ? new KernelDataPlane({ owner: o.name, tunnelIp: o.tunnelIp, vxlanPort: port })
              : undefined;
          // Before serving: what a previous incarnation left must be known before any Request can rebuild it.
          await kernel?.scanOrphans(rootLogger);
          const running = await startForwarder({
            name: o.name,
            listenOn: o.listenOn,
            nsmgrUrl: o.connectTo,
            labels: labelsOf(o.labels),
            serviceName: o.nsname,
            dataPlane: kernel ?? noopDataPlane({ tunnelIp: o.tunnelIp }),
            tunnelIp: o.tunnelIp,
            vxlanPort: port,
            security: await securityFrom(o, [o.listenOn]),
          });
          const grace = parseDuration(o.orphanGrace, "--orphan-grace");
          kernel
            ?.collectOrphans(grace, rootLogger)
            .catch((err: unknown) => rootLogger.warn({ err }, "orphan collection failed"));
          stopOnSignals(async () => {
            await running.stop();
            await kernel?.close();
          });
        },
      );
  }

  const nse = program.command("nse").description("run a reference endpoint");
  endpointFlags(
    withSecurityFlags(
      nse.command("icmp-responder").description("IPAM endpoint: point-to-point addresses from --cidr"),
      "nse",
    ),
    "nse.sock",
    "icmp-responder",
  )
    .option("--labels <k=v,...>", "labels of this endpoint (NSM_LABELS)", env("NSM_LABELS"))
    .option(
      "--cidr <cidrs>",
      "address pools, comma-separated (NSM_CIDR_PREFIX)",
      env("NSM_CIDR_PREFIX", "169.254.0.0/16"),
    )
    .option("--ipam-policy <policy>", "polite or strict (NSM_IPAM_POLICY)", env("NSM_IPAM_POLICY", "polite"))
    .option(
      "--payload <payload>",
      "ETHERNET or IP, for services it registers (NSM_PAYLOAD)",
      env("NSM_PAYLOAD", "ETHERNET"),
    )
    .option("--netns <path>", "the endpoint's network namespace (default: its own)")
    .option(
      "--dns-configs <json>",
      'DNS for clients: [{"dns_server_ips":[..],"search_domains":[..]}] (NSM_DNS_CONFIGS)',
      env("NSM_DNS_CONFIGS"),
    )
    .action(
      async (
        o: SecurityFlags & {
          listenOn: string;
          connectTo: string;
          services: string;
          labels?: string;
          cidr: string;
          ipamPolicy: string;
          payload: string;
          netns?: string;
          dnsConfigs?: string;
        },
      ) => {
        if (o.ipamPolicy !== "polite" && o.ipamPolicy !== "strict")
          throw new Error(`--ipam-policy: "${o.ipamPolicy}" is not polite or strict`);
        const running = await startIcmpResponder({
          name: o.name,
          listenOn: o.listenOn,
          nsmgrUrl: o.connectTo,
          services: listOf(o.services),
          labels: labelsOf(o.labels),
          cidrs: listOf(o.cidr),
          ipamPolicy: o.ipamPolicy,
          payload: o.payload,
          netnsPath: o.netns,
          dnsConfigs: o.dnsConfigs ? parseDnsConfigs(o.dnsConfigs) : [],
          security: await securityFrom(o, [o.listenOn]),
        });
        stopOnSignals(() => running.stop());
      },
    );

  withSecurityFlags(
    program.command("nsc").description("request network services for a network namespace"),
    "nsc",
  )
    .option(
      "--connect-to <url>",
      "this node's nsmgr (NSM_CONNECT_TO)",
      env("NSM_CONNECT_TO", "unix:///var/lib/networkservicemesh/nsm.io.sock"),
    )
    .option(
      "--service <urls>",
      "services: name or kernel://<service>/<ifname>?label=value, comma-separated (NSM_NETWORK_SERVICES)",
      env("NSM_NETWORK_SERVICES"),
    )
    .option("--labels <k=v,...>", "labels for every request (NSM_LABELS)", env("NSM_LABELS"))
    .option("--netns <path>", "the client's network namespace (default: its own)")
    .option("--request-timeout <duration>", "(NSM_REQUEST_TIMEOUT)", env("NSM_REQUEST_TIMEOUT", "15s"))
    .option("--once", "print the connections and close them again (no refresh loop)")
    .option("--no-heal", "do not heal connections when a component dies")
    .option(
      "--liveness-check <bool>",
      "ping across connections to find a dead data path (NSM_LIVENESS_CHECK_ENABLED)",
      env("NSM_LIVENESS_CHECK_ENABLED", "true"),
    )
    .action(
      async (
        o: SecurityFlags & {
          connectTo: string;
          service?: string;
          labels?: string;
          netns?: string;
          requestTimeout: string;
          once?: boolean;
          heal: boolean;
          livenessCheck: string;
        },
      ) => {
        if (!o.service) throw new Error("--service (NSM_NETWORK_SERVICES) is required");
        const client = new NsmClient({
          name: o.name,
          nsmgrUrl: o.connectTo,
          netnsPath: o.netns,
          labels: labelsOf(o.labels),
          requestTimeoutMs: parseDuration(o.requestTimeout, "--request-timeout"),
          // Liveness interval and timeout come from NSM_LIVENESS_CHECK_INTERVAL / _TIMEOUT (200 ms, 1 s).
          ...(o.heal && !o.once ? { heal: { liveness: !/^(false|0|no)$/i.test(o.livenessCheck) } } : {}),
          security: await securityFrom(o),
        });
        try {
          for (const s of listOf(o.service)) {
            const t0 = performance.now();
            const conn = await client.request(parseServiceUrl(s));
            const setupMs = Math.round((performance.now() - t0) * 10) / 10;
            console.log(JSON.stringify({ ...connectionSummary(conn), setupMs }));
          }
        } catch (err) {
          await client.closeAll();
          throw err;
        }
        const printAll = (): void => {
          for (const c of client.connections()) console.log(JSON.stringify(connectionSummary(c)));
        };
        if (o.once) return client.closeAll();
        process.on("SIGUSR1", printAll);
        console.error(JSON.stringify({ msg: "nsc connected", connections: client.connections().length }));
        // Nothing else keeps the process alive (refresh timers are unref'd): hold it until a signal.
        const keepAlive = setInterval(() => undefined, 3_600_000);
        stopOnSignals(async () => {
          clearInterval(keepAlive);
          await client.closeAll();
        });
      },
    );

  program
    .command("connections")
    .description("connections of any hop (nsmgr, forwarder, endpoint) via MonitorConnections")
    .requiredOption("--url <url>", "the hop's URL (unix:///… or tcp://…)")
    .option("--service <name>", "only this network service")
    .option("-w, --watch", "keep printing changes")
    .action(async (o: { url: string; service?: string; watch?: boolean }) => {
      const client = new GrpcClient(o.url);
      const stream = client.serverStream(MonitorConnectionService.monitorConnections, {
        pathSegments: [],
        networkServices: o.service ? [o.service] : [],
      });
      process.once("SIGINT", () => stream.cancel());
      try {
        for await (const ev of stream) {
          const rows = Object.values(ev.connections).map(row);
          if (ev.type === ConnectionEventType.INITIAL_STATE_TRANSFER) {
            console.log(
              table(["ID", "SERVICE", "ENDPOINT", "STATE", "MECHANISM", "SRC", "DST", "PATH"], rows),
            );
            if (!o.watch) break;
          } else {
            for (const r of rows) console.log(`${ConnectionEventType[ev.type]}  ${r.join("  ")}`);
          }
        }
      } catch (err) {
        if ((err as { code?: number }).code !== 1) throw err;
      } finally {
        stream.cancel();
        client.close();
      }
    });
}

function row(c: Connection): string[] {
  const ip = c.context?.ipContext;
  return [
    c.id,
    c.networkService,
    c.networkServiceEndpointName,
    State[c.state],
    c.mechanism ? `${c.mechanism.cls}/${c.mechanism.type}` : "",
    ip?.srcIpAddrs.join(",") ?? "",
    ip?.dstIpAddrs.join(",") ?? "",
    (c.path?.pathSegments ?? []).map((s) => s.name).join(">"),
  ];
}

export function connectionSummary(c: Connection): object {
  const ip = c.context?.ipContext;
  return {
    id: c.id,
    service: c.networkService,
    endpoint: c.networkServiceEndpointName,
    state: State[c.state],
    mechanism: c.mechanism,
    srcIps: ip?.srcIpAddrs ?? [],
    dstIps: ip?.dstIpAddrs ?? [],
    srcRoutes: ip?.srcRoutes.map((r) => r.prefix) ?? [],
    dstRoutes: ip?.dstRoutes.map((r) => r.prefix) ?? [],
    path: (c.path?.pathSegments ?? []).map((s) => ({ name: s.name, id: s.id })),
    ...(Object.keys(c.context?.extraContext ?? {}).length > 0 ? { extra: c.context!.extraContext } : {}),
  };
}
