// `nsm nsmgr | forwarder | nse | nsc | connections`: start the NSM components, and look at connections.
import type { Command } from "commander";
import { ConnectionEventType, MonitorConnectionService, State, type Connection } from "../api/connection.js";
import { GrpcClient } from "../core/client.js";
import { parseDuration } from "../core/duration.js";
import { startForwarder } from "../components/forwarder.js";
import { startIcmpResponder } from "../components/endpoint.js";
import { NsmClient, parseServiceUrl } from "../components/client.js";
import { startNsmgr } from "../components/nsmgr.js";
import { noopDataPlane } from "../forwarder/dataplane.js";
import { KernelDataPlane } from "../forwarder/kernel/kernel.js";
import { rootLogger } from "../core/log.js";
import { parseDnsConfigs } from "../networkservice/dnscontext/dnscontext.js";
import { table } from "./format.js";
import { securityFrom, withSecurityFlags, type SecurityFlags } from "./security.js";
import { env, listOf, stopOnSignals } from "./util.js";
import { telemetryFrom, withTelemetryFlags, type TelemetryFlags } from "./telemetry.js";

/** Where a node-local component serves (`socket` under /var/lib/networkservicemesh), its nsmgr, telemetry. */
function servingFlags(cmd: Command, socket: string): Command {
  return withTelemetryFlags(cmd)
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
  nsmgrCommand(program);
  forwarderCommands(program);
  nseCommands(program);
  nscCommand(program);
  connectionsCommand(program);
}

/** `nsm nsmgr` */
function nsmgrCommand(program: Command): void {
  withTelemetryFlags(
    withSecurityFlags(
      program.command("nsmgr").description("run the per-node network service manager"),
      "nsmgr",
    ),
  )
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
        o: SecurityFlags &
          TelemetryFlags & {
            listenOn: string;
            publicUrl?: string;
            registryUrl?: string;
            forwarderService: string;
            excludedPrefixesFile?: string;
          },
      ) => {
        const telemetry = await telemetryFrom(o, o.name);
        const running = await startNsmgr({
          name: o.name,
          listenOn: listOf(o.listenOn),
          publicUrl: o.publicUrl,
          registryUrl: o.registryUrl,
          forwarderServiceName: o.forwarderService,
          excludedPrefixesFile: o.excludedPrefixesFile,
          security: await securityFrom(o, listOf(o.listenOn)),
        });
        stopOnSignals(async () => {
          await running.stop();
          await telemetry.stop();
        });
      },
    );
}

/** `nsm forwarder kernel|noop` */
function forwarderCommands(program: Command): void {
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
      .option(
        "--allow-host-netns",
        "let clients name the host's or the forwarder's own network namespace (NSM_ALLOW_HOST_NETNS)",
        env("NSM_ALLOW_HOST_NETNS") === "true",
      )
      .action(
        async (
          o: SecurityFlags &
            TelemetryFlags & {
              listenOn: string;
              connectTo: string;
              labels: string;
              tunnelIp: string;
              vxlanPort: string;
              allowHostNetns?: boolean;
              nsname: string;
              orphanGrace: string;
            },
        ) => {
          const port = Number(o.vxlanPort);
          if (!Number.isInteger(port) || port < 1 || port > 65535)
            throw new Error(`--vxlan-port: "${o.vxlanPort}" is not a port`);
          const telemetry = await telemetryFrom(o, o.name);
          const kernel =
            kind === "kernel"
              ? new KernelDataPlane({
                  owner: o.name,
                  tunnelIp: o.tunnelIp,
                  vxlanPort: port,
                  allowHostNetns: o.allowHostNetns === true,
                })
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
            await telemetry.stop();
          });
        },
      );
  }
}

/** `nsm nse icmp-responder` */
function nseCommands(program: Command): void {
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
        o: SecurityFlags &
          TelemetryFlags & {
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
        const telemetry = await telemetryFrom(o, o.name);
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
        stopOnSignals(async () => {
          await running.stop();
          await telemetry.stop();
        });
      },
    );
}

/** `nsm nsc` */
function nscCommand(program: Command): void {
  withTelemetryFlags(
    withSecurityFlags(
      program.command("nsc").description("request network services for a network namespace"),
      "nsc",
    ),
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
        o: SecurityFlags &
          TelemetryFlags & {
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
        const telemetry = await telemetryFrom(o, o.name);
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
        if (o.once) {
          await client.closeAll();
          return telemetry.stop();
        }
        process.on("SIGUSR1", printAll);
        console.error(JSON.stringify({ msg: "nsc connected", connections: client.connections().length }));
        // Nothing else keeps the process alive (refresh timers are unref'd): hold it until a signal.
        const keepAlive = setInterval(() => undefined, 3_600_000);
        stopOnSignals(async () => {
          clearInterval(keepAlive);
          await client.closeAll();
          await telemetry.stop();
        });
      },
    );
}

/** `nsm connections` */
function connectionsCommand(program: Command): void {
  withSecurityFlags(
    program
      .command("connections")
      .description(
        "connections of any hop (nsmgr, forwarder, endpoint) via MonitorConnections; a hop shows an identity " +
          "only the connections whose path it is on",
      ),
    "nsm-cli",
  )
    .requiredOption("--url <url>", "the hop's URL (unix:///… or tcp://…)")
    .option("--service <name>", "only this network service")
    .option("-w, --watch", "keep printing changes")
    .action(async (o: SecurityFlags & { url: string; service?: string; watch?: boolean }) => {
      const security = await securityFrom(o);
      const client = new GrpcClient(o.url, security.channelOptions(), security.channelCredentials(o.url));
      const stream = client.serverStream(
        MonitorConnectionService.monitorConnections,
        { pathSegments: [], networkServices: o.service ? [o.service] : [] },
        { metadata: await security.callMetadata(undefined, o.url, client) },
      );
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
        security.close();
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
