// `nsm forwarder tf`, `nsm nse tf-vn` and `nsm tf-emulator config|agent`: the TF/OpenSDN integration.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Command } from "commander";
import { parseDuration } from "../core/duration.js";
import { rootLogger } from "../core/log.js";
import { startForwarder } from "../components/forwarder.js";
import { startTfVnEndpoint } from "../components/tfvn.js";
import { AgentClient, type AgentGeneration } from "../forwarder/tf/agent.js";
import { TfDataPlane } from "../forwarder/tf/tf.js";
import { tfVmIfnameClient } from "../forwarder/tf/vmifname.js";
import type { VncAuth } from "../forwarder/tf/vnc.js";
import { startAgentEmulator } from "../tf-emulator/agent/server.js";
import { startVncServer } from "../tf-emulator/vnc/server.js";
import { endpointFlags, forwarderFlags, labelsOf } from "./components.js";
import { securityFrom, withSecurityFlags, type SecurityFlags } from "./security.js";
import { env, listOf, stopOnSignals } from "./util.js";
import { telemetryFrom, type TelemetryFlags } from "./telemetry.js";

const collect = (v: string, prev: string[] = []): string[] => [...prev, ...listOf(v)];

function generationOf(v: string, flag: string): AgentGeneration {
  if (v !== "r2011" && v !== "r2005")
    throw new Error(`${flag}: "${v}" is not r2011 (R2011+/OpenSDN) or r2005`);
  return v;
}

/** "service=a:b:c" pairs → service → fq-name. */
function fqMap(pairs: string[], flag: string, parts: number): Record<string, string[]> {
  return Object.fromEntries(
    pairs.map((p) => {
      const i = p.indexOf("=");
      const fq = p.slice(i + 1).split(":");
      if (i <= 0 || fq.length !== parts || fq.some((x) => x === ""))
        throw new Error(
          `${flag}: "${p}" is not service=${parts === 3 ? "domain:project:vn" : "domain:project:vn:pool"}`,
        );
      return [p.slice(0, i), fq];
    }),
  );
}

function hostPort(v: string, flag: string): { host: string; port: number } {
  const i = v.lastIndexOf(":");
  const port = Number(v.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`${flag}: "${v}" is not host:port`);
  return { host: v.slice(0, i).replace(/^\[|\]$/g, ""), port };
}

interface VncAuthFlags {
  vncAuth: string;
  keystoneUrl?: string;
  keystoneUser?: string;
  keystonePasswordFile?: string;
  keystoneProject?: string;
  vncTokenFile?: string;
}

function withVncAuthFlags(cmd: Command): Command {
  return cmd
    .option("--vnc-auth <mode>", "none, keystone or token (NSM_TF_VNC_AUTH)", env("NSM_TF_VNC_AUTH", "none"))
    .option(
      "--keystone-url <url>",
      "keystone base URL, e.g. http://host:35357 (NSM_TF_KEYSTONE_URL)",
      env("NSM_TF_KEYSTONE_URL"),
    )
    .option("--keystone-user <name>", "keystone user (NSM_TF_KEYSTONE_USER)", env("NSM_TF_KEYSTONE_USER"))
    .option(
      "--keystone-password-file <file>",
      "file holding the keystone password (NSM_TF_KEYSTONE_PASSWORD_FILE)",
      env("NSM_TF_KEYSTONE_PASSWORD_FILE"),
    )
    .option(
      "--keystone-project <name>",
      "keystone project (NSM_TF_KEYSTONE_PROJECT)",
      env("NSM_TF_KEYSTONE_PROJECT", "admin"),
    )
    .option(
      "--vnc-token-file <file>",
      "file holding a static X-Auth-Token (NSM_TF_VNC_TOKEN_FILE)",
      env("NSM_TF_VNC_TOKEN_FILE"),
    );
}

function vncAuthFrom(o: VncAuthFlags): VncAuth {
  const read = (f: string | undefined, flag: string): string => {
    if (!f) throw new Error(`--vnc-auth ${o.vncAuth} needs ${flag}`);
    return readFileSync(f, "utf8").trim();
  };
  switch (o.vncAuth) {
    case "none":
      return { kind: "none" };
    case "token":
      return { kind: "token", token: read(o.vncTokenFile, "--vnc-token-file") };
    case "keystone":
      if (!o.keystoneUrl || !o.keystoneUser)
        throw new Error("--vnc-auth keystone needs --keystone-url and --keystone-user");
      return {
        kind: "keystone",
        url: o.keystoneUrl,
        username: o.keystoneUser,
        password: read(o.keystonePasswordFile, "--keystone-password-file"),
        ...(o.keystoneProject ? { project: o.keystoneProject } : {}),
      };
    default:
      throw new Error(`--vnc-auth: "${o.vncAuth}" is not none, keystone or token`);
  }
}

export function tfCommands(program: Command): void {
  const fwd = program.commands.find((c) => c.name() === "forwarder")!;
  forwarderFlags(
    fwd
      .command("tf")
      .description("attach workloads to TF/OpenSDN virtual networks through the vRouter agent"),
    "forwarder-tf.sock",
    "tf=true",
    // Not forwarder-<host>: the node's kernel forwarder has that name, and a name is a registration.
    "forwarder-tf",
  )
    .option(
      "--agent-url <url>",
      "the vRouter agent's port API (NSM_TF_AGENT_URL)",
      env("NSM_TF_AGENT_URL", "http://127.0.0.1:9091"),
    )
    .option(
      "--agent-generation <gen>",
      "r2011 (R2011+, OpenSDN: /vm-cfg by VM name) or r2005 (by VM uuid) (NSM_TF_AGENT_GENERATION)",
      env("NSM_TF_AGENT_GENERATION", "r2011"),
    )
    .option(
      "--port-dir <dir>",
      "the agent's /vm port-file directory (NSM_TF_PORT_DIR)",
      env("NSM_TF_PORT_DIR", "/var/lib/contrail/ports/vm"),
    )
    .option(
      "--poll-timeout <duration>",
      "wait between agent polls, the CNI's poll-timeout (NSM_TF_POLL_TIMEOUT)",
      env("NSM_TF_POLL_TIMEOUT", "3s"),
    )
    .option(
      "--poll-retries <n>",
      "agent polls after the first, the CNI's poll-retries (NSM_TF_POLL_RETRIES)",
      env("NSM_TF_POLL_RETRIES", "20"),
    )
    .option("--mtu <n>", "MTU of the pod interface (NSM_TF_MTU)", env("NSM_TF_MTU", "1500"))
    .action(
      async (
        o: SecurityFlags &
          TelemetryFlags & {
            listenOn: string;
            connectTo: string;
            labels: string;
            nsname: string;
            agentUrl: string;
            agentGeneration: string;
            portDir: string;
            pollTimeout: string;
            pollRetries: string;
            mtu: string;
            orphanGrace: string;
          },
      ) => {
        const retries = Number(o.pollRetries);
        if (!Number.isInteger(retries) || retries < 0)
          throw new Error(`--poll-retries: "${o.pollRetries}" is not a count`);
        const mtu = Number(o.mtu);
        if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
          throw new Error(`--mtu: "${o.mtu}" is not an MTU`);
        const telemetry = await telemetryFrom(o, o.name);
        const tf = new TfDataPlane({
          owner: o.name,
          agent: new AgentClient({
            url: o.agentUrl,
            generation: generationOf(o.agentGeneration, "--agent-generation"),
            portDir: o.portDir,
          }),
          poll: { intervalMs: parseDuration(o.pollTimeout, "--poll-timeout"), retries },
          mtu,
        });
        const running = await startForwarder({
          name: o.name,
          listenOn: o.listenOn,
          nsmgrUrl: o.connectTo,
          labels: labelsOf(o.labels),
          serviceName: o.nsname,
          dataPlane: tf,
          outgoing: [tfVmIfnameClient()],
          tunnelIp: "127.0.0.1",
          security: await securityFrom(o, [o.listenOn]),
        });
        tf.collectOrphans(parseDuration(o.orphanGrace, "--orphan-grace"), rootLogger).catch((err: unknown) =>
          rootLogger.warn({ err }, "orphan collection failed"),
        );
        stopOnSignals(async () => {
          await running.stop();
          await tf.close();
          await telemetry.stop();
        });
      },
    );

  const nse = program.commands.find((c) => c.name() === "nse")!;
  endpointFlags(
    withVncAuthFlags(
      withSecurityFlags(
        nse
          .command("tf-vn")
          .description("endpoint for services backed by TF/OpenSDN virtual networks (one per node)"),
        "nse-tf",
      ),
    ),
    "nse-tf.sock",
    "external",
  )
    .option(
      "--node-name <name>",
      "this node's name = its virtual-router's name (NODE_NAME)",
      env("NODE_NAME", hostname()),
    )
    .option(
      "--vnc-url <url>",
      "the VNC config API (NSM_TF_VNC_URL)",
      env("NSM_TF_VNC_URL", "http://127.0.0.1:8082"),
    )
    .option(
      "--project <fq>",
      "project of services without --vn (NSM_TF_PROJECT)",
      env("NSM_TF_PROJECT", "default-domain:k8s-default"),
    )
    .option(
      "--vn <service=fq>",
      "the VN backing a service, repeatable (default <project>:<service>)",
      collect,
    )
    .option(
      "--fip-pool <service=fq>",
      "give the service's clients a floating IP from this pool, repeatable",
      collect,
    )
    .option(
      "--default-route <mode>",
      "auto (if the VN has external access), always or never",
      env("NSM_TF_DEFAULT_ROUTE", "auto"),
    )
    .option("--labels <k=v,...>", "labels of this endpoint (NSM_LABELS)", env("NSM_LABELS"))
    .option(
      "--orphan-grace <duration>",
      "after a start, TF objects of this node's NSM connections that nobody claims within this are removed (NSM_ORPHAN_GRACE)",
      env("NSM_ORPHAN_GRACE", "5m"),
    )
    .action(
      async (
        o: SecurityFlags &
          VncAuthFlags &
          TelemetryFlags & {
            listenOn: string;
            connectTo: string;
            services: string;
            nodeName: string;
            vncUrl: string;
            project: string;
            vn?: string[];
            fipPool?: string[];
            defaultRoute: string;
            labels?: string;
            orphanGrace: string;
          },
      ) => {
        if (!["auto", "always", "never"].includes(o.defaultRoute))
          throw new Error(`--default-route: "${o.defaultRoute}" is not auto, always or never`);
        const telemetry = await telemetryFrom(o, o.name);
        const running = await startTfVnEndpoint({
          name: o.name,
          listenOn: o.listenOn,
          nsmgrUrl: o.connectTo,
          services: listOf(o.services),
          labels: labelsOf(o.labels),
          nodeName: o.nodeName,
          vncUrl: o.vncUrl,
          vncAuth: vncAuthFrom(o),
          project: o.project.split(":"),
          vns: fqMap(o.vn ?? [], "--vn", 3),
          fipPools: fqMap(o.fipPool ?? [], "--fip-pool", 4),
          defaultRoute: o.defaultRoute as "auto" | "always" | "never",
          orphanGraceMs: parseDuration(o.orphanGrace, "--orphan-grace"),
          security: await securityFrom(o, [o.listenOn]),
        });
        stopOnSignals(async () => {
          await running.stop();
          await telemetry.stop();
        });
      },
    );

  const emu = program
    .command("tf-emulator")
    .description(
      "a local stand-in for an OpenSDN/TF cluster (config API, vRouter agents): development and CI only",
    );
  emu
    .command("config")
    .description("the VNC config API (and, with --keystone-user, a keystone v3 token endpoint)")
    .option("--listen <host:port>", "where to serve", "127.0.0.1:8082")
    .option("--state-file <file>", "JSON file the config survives restarts in")
    .option("--unix-socket <path>", "also serve on this unix socket")
    .option(
      "--compute <name=ip>",
      "a compute (virtual-router name = its hostname, fabric IP), repeatable",
      collect,
    )
    .option("--keystone-user <name>", "require keystone tokens issued to this user")
    .option("--keystone-password-file <file>", "the keystone user's password")
    .action(
      async (o: {
        listen: string;
        stateFile?: string;
        unixSocket?: string;
        compute?: string[];
        keystoneUser?: string;
        keystonePasswordFile?: string;
      }) => {
        const { host, port } = hostPort(o.listen, "--listen");
        const computes = (o.compute ?? []).map((c) => {
          const [name, ip] = c.split("=");
          if (!name || !ip) throw new Error(`--compute: "${c}" is not name=ip`);
          return { name, ip };
        });
        if (o.keystoneUser && !o.keystonePasswordFile)
          throw new Error("--keystone-user needs --keystone-password-file");
        const running = await startVncServer({
          host,
          port,
          ...(o.stateFile ? { stateFile: o.stateFile } : {}),
          ...(o.unixSocket ? { unixSocket: o.unixSocket } : {}),
          computes,
          ...(o.keystoneUser
            ? {
                keystone: {
                  username: o.keystoneUser,
                  password: readFileSync(o.keystonePasswordFile!, "utf8").trim(),
                },
              }
            : {}),
          log: (msg: string, fields?: Record<string, unknown>) => rootLogger.info(fields ?? {}, msg),
        });
        rootLogger.info({ urls: [running.url] }, "tf config API emulator ready");
        stopOnSignals(() => running.stop());
      },
    );
  withVncAuthFlags(
    emu
      .command("agent")
      .description("a vRouter agent's port API on this compute's 127.0.0.1:9091, with a Linux data plane"),
  )
    .option(
      "--hostname <name>",
      "this compute's name = its virtual-router's name (NODE_NAME)",
      env("NODE_NAME", hostname()),
    )
    .option("--config-url <url>", "the config API", "http://127.0.0.1:8082")
    .option("--listen <host:port>", "where to serve", "127.0.0.1:9091")
    .option("--ports-root <dir>", "the agent's port directory", "/var/lib/contrail/ports")
    .option("--generation <gen>", "r2011 (R2011+, OpenSDN) or r2005", "r2011")
    .option(
      "--peer-config-url <url>",
      "another cluster's config API: VNs sharing a route target are stretched, repeatable",
      collect,
    )
    .option("--sync-interval <duration>", "how often config is re-read", "1s")
    .option(
      "--stale-cleanup <duration>",
      "after a /syncports, ports not posted again within this time are removed (TF's stale cleaner)",
      "60s",
    )
    .action(
      async (
        o: VncAuthFlags & {
          hostname: string;
          configUrl: string;
          listen: string;
          portsRoot: string;
          generation: string;
          peerConfigUrl?: string[];
          syncInterval: string;
          staleCleanup: string;
        },
      ) => {
        const { host, port } = hostPort(o.listen, "--listen");
        const running = await startAgentEmulator({
          hostname: o.hostname,
          configUrl: o.configUrl,
          configAuth: vncAuthFrom(o),
          peerConfigUrls: o.peerConfigUrl ?? [],
          host,
          port,
          portsRoot: o.portsRoot,
          generation: generationOf(o.generation, "--generation"),
          syncIntervalMs: parseDuration(o.syncInterval, "--sync-interval"),
          staleCleanupMs: parseDuration(o.staleCleanup, "--stale-cleanup"),
          log: rootLogger.child({ component: "tf-agent", name: o.hostname }),
        });
        stopOnSignals(() => running.stop());
      },
    );
}
