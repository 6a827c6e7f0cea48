// Security flags every component command shares, and the Security they make: secure by default (an
// X.509-SVID from the SPIFFE Workload API or from files), insecure only when asked for twice over.
import { hostname } from "node:os";
import type { Command } from "commander";
import { createSecurity, type Security } from "../components/security.js";
import { parseDuration } from "../core/duration.js";
import { rootLogger } from "../core/log.js";
import { endpointSocketEnv, identityFromWorkloadApi } from "../security/workloadapi.js";
import type { Limits } from "../components/limits.js";
import { defaultMaxConcurrentStreams, defaultMaxMetadataSize } from "../core/grpc.js";
import { defaultMaxChannels, dialPolicy } from "../networkservice/connect/pool.js";
import { defaultMaxMonitorStreamsPerIdentity } from "../networkservice/monitor/monitor.js";
import { defaultMaxRegistrations, defaultMaxRegistrationsPerIdentity } from "../registry/memory.js";
import { defaultMaxWatchesPerIdentity } from "../registry/server.js";
import { env, listOf } from "./util.js";

export interface SecurityFlags {
  name: string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  trustDomains?: string;
  insecure?: boolean;
  allowInsecureNetwork?: boolean;
  maxTokenLifetime: string;
  maxStreamsPerConnection: string;
  maxMetadataSize: string;
  maxMonitorStreamsPerIdentity: string;
  monitorSeeAll?: string;
  maxChannels: string;
  allowDial?: string;
  maxRegistrationsPerIdentity: string;
  maxRegistrations: string;
  maxWatchesPerIdentity: string;
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
    )
    .option(
      "--max-streams-per-connection <n>",
      "concurrent gRPC streams one client connection may open (NSM_MAX_STREAMS_PER_CONNECTION)",
      env("NSM_MAX_STREAMS_PER_CONNECTION", String(defaultMaxConcurrentStreams)),
    )
    .option(
      "--max-metadata-size <bytes>",
      "request metadata a call may carry (NSM_MAX_METADATA_SIZE)",
      env("NSM_MAX_METADATA_SIZE", String(defaultMaxMetadataSize)),
    )
    .option(
      "--max-monitor-streams-per-identity <n>",
      "concurrent MonitorConnections streams per caller identity (NSM_MAX_MONITOR_STREAMS_PER_IDENTITY)",
      env("NSM_MAX_MONITOR_STREAMS_PER_IDENTITY", String(defaultMaxMonitorStreamsPerIdentity)),
    )
    .option(
      "--monitor-see-all <ids>",
      "SPIFFE IDs that see every connection in MonitorConnections (operators' tools), comma-separated; " +
        "others see only the connections they requested (NSM_MONITOR_SEE_ALL)",
      env("NSM_MONITOR_SEE_ALL"),
    )
    .option(
      "--max-channels <n>",
      "gRPC channels to next hops this component keeps (NSM_MAX_CHANNELS)",
      env("NSM_MAX_CHANNELS", String(defaultMaxChannels)),
    )
    .option(
      "--allow-dial <rules>",
      "URLs this component may dial, comma-separated: unix, unix:/dir, tcp, tcp:<cidr>; default: any unix:// " +
        "and tcp:// (NSM_ALLOW_DIAL)",
      env("NSM_ALLOW_DIAL"),
    )
    .option(
      "--max-registrations-per-identity <n>",
      "registry: live registrations one identity may hold per kind (NSM_MAX_REGISTRATIONS_PER_IDENTITY)",
      env("NSM_MAX_REGISTRATIONS_PER_IDENTITY", String(defaultMaxRegistrationsPerIdentity)),
    )
    .option(
      "--max-registrations <n>",
      "registry: live registrations per kind in all (NSM_MAX_REGISTRATIONS)",
      env("NSM_MAX_REGISTRATIONS", String(defaultMaxRegistrations)),
    )
    .option(
      "--max-watches-per-identity <n>",
      "registry: concurrent Find watches per identity (NSM_MAX_WATCHES_PER_IDENTITY)",
      env("NSM_MAX_WATCHES_PER_IDENTITY", String(defaultMaxWatchesPerIdentity)),
    );
}

function count(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: "${text}" is not a positive integer`);
  return n;
}

/** The Limits the flags give. */
export function limitsFrom(o: SecurityFlags): Limits {
  return {
    server: {
      maxConcurrentStreams: count(o.maxStreamsPerConnection, "--max-streams-per-connection"),
      maxMetadataSize: count(o.maxMetadataSize, "--max-metadata-size"),
    },
    monitor: {
      maxStreamsPerIdentity: count(o.maxMonitorStreamsPerIdentity, "--max-monitor-streams-per-identity"),
      seeAll: o.monitorSeeAll ? listOf(o.monitorSeeAll) : [],
    },
    pool: {
      maxChannels: count(o.maxChannels, "--max-channels"),
      ...(o.allowDial ? { allowDial: dialPolicy(listOf(o.allowDial)) } : {}),
    },
    registrations: {
      maxPerIdentity: count(o.maxRegistrationsPerIdentity, "--max-registrations-per-identity"),
      maxTotal: count(o.maxRegistrations, "--max-registrations"),
    },
    registry: {
      maxWatchesPerIdentity: count(o.maxWatchesPerIdentity, "--max-watches-per-identity"),
    },
  };
}

/**
 * The component's security: an SVID from files or the Workload API, or insecure when asked for. Insecure
 * mode is logged as a warning, and refuses non-loopback TCP listeners without a second flag.
 */
export async function securityFrom(o: SecurityFlags, listenOn: string[] = []): Promise<Security> {
  const common = {
    name: o.name,
    limits: limitsFrom(o),
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
