// `nsm dashboard`: a live web view of the mesh (src/dashboard/) — the registries' forwarders and endpoints and
// the nsmgrs' connections, served on --listen-on. Its identity must be in each nsmgr's --monitor-see-all to
// see every connection there.
import type { Command } from "commander";
import { startDashboard } from "../dashboard/dashboard.js";
import { checkUrl, parseNsmgrTargets } from "../dashboard/nsmgrs.js";
import { parseListenAddress } from "../observability/metrics/address.js";
import { rootLogger } from "../core/log.js";
import { securityFrom, withSecurityFlags, type SecurityFlags } from "./security.js";
import { env, listOf, stopOnSignals } from "./util.js";

interface DashboardFlags extends SecurityFlags {
  registryUrl: string;
  nsmgrUrl?: string;
  discoverNsmgrs: string;
  listenOn: string;
  traceUiUrl?: string;
  forwarderService: string;
}

export function dashboardCommand(program: Command): void {
  withSecurityFlags(
    program
      .command("dashboard")
      .description(
        "serve a live web view of the mesh: nodes, nsmgrs, forwarders, endpoints and every connection's path, " +
          "mechanisms, addresses and state, as the registries and the nsmgrs' MonitorConnections tell it",
      ),
    "dashboard",
  )
    .option(
      "--registry-url <urls>",
      "registries to watch, comma-separated; empty for none (NSM_REGISTRY_URL)",
      env("NSM_REGISTRY_URL", "tcp://127.0.0.1:5002"),
    )
    .option(
      "--nsmgr-url <urls>",
      "nsmgrs to watch, comma-separated, each url or name=url (the name the nsmgr has: its NSM_NAME) " +
        "(NSM_NSMGR_URL)",
      env("NSM_NSMGR_URL"),
    )
    .option(
      "--discover-nsmgrs <bool>",
      "also watch the nsmgrs the registry names, at their public URLs (NSM_DISCOVER_NSMGRS)",
      env("NSM_DISCOVER_NSMGRS", "true"),
    )
    .option(
      "--listen-on <host:port>",
      "where to serve the page and its API; port 0 picks a free one (NSM_LISTEN_ON)",
      env("NSM_LISTEN_ON", "127.0.0.1:3001"),
    )
    .option(
      "--trace-ui-url <url>",
      "Jaeger UI base URL (e.g. http://127.0.0.1:16686): each connection links to its traces (NSM_TRACE_UI_URL)",
      env("NSM_TRACE_UI_URL"),
    )
    .option(
      "--forwarder-service <name>",
      "the service forwarders register as (NSM_FORWARDER_NETWORK_SERVICE_NAME)",
      env("NSM_FORWARDER_NETWORK_SERVICE_NAME", "forwarder"),
    )
    .action(async (o: DashboardFlags) => {
      const registryUrls = listOf(o.registryUrl);
      for (const u of registryUrls) checkUrl(u, "--registry-url");
      const nsmgrs = parseNsmgrTargets(o.nsmgrUrl ?? "", "--nsmgr-url");
      const discover = parseBool(o.discoverNsmgrs, "--discover-nsmgrs");
      if (registryUrls.length === 0 && nsmgrs.length === 0)
        throw new Error("nothing to watch: give --registry-url and/or --nsmgr-url");
      const listen = parseListenAddress(o.listenOn, "--listen-on");
      const traceUiUrl = o.traceUiUrl ? httpUrl(o.traceUiUrl, "--trace-ui-url") : undefined;
      if (!isLoopback(listen.host))
        rootLogger.warn(
          { listenOn: o.listenOn },
          "the dashboard has no authentication: whoever reaches it sees the mesh's topology and addresses",
        );
      const security = await securityFrom(o);
      const running = await startDashboard({
        name: o.name,
        registryUrls,
        nsmgrs,
        discoverNsmgrs: discover,
        listen,
        ...(traceUiUrl ? { traceUiUrl } : {}),
        forwarderService: o.forwarderService,
        security,
      });
      stopOnSignals(async () => {
        await running.stop();
        security.close();
      });
    });
}

function parseBool(text: string, flag: string): boolean {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  throw new Error(`${flag}: "${text}" is not true or false`);
}

function httpUrl(text: string, flag: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`${flag}: "${text}" is not a URL; give http(s)://host:port, e.g. http://127.0.0.1:16686`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new Error(`${flag}: "${text}" is not an http:// or https:// URL`);
  return text;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
