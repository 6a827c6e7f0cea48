// `nsm registry …`: run a registry, and talk to one as a human.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { parseAllDocuments } from "yaml";
import { NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import { parseDuration } from "../core/duration.js";
import type { Metadata } from "@grpc/grpc-js";
import { RegistryClient } from "../registry/client.js";
import { registryDefaults, startRegistry } from "../components/registry.js";
import { endpointCrd, expiresIn, serviceCrd, table, yamlDocs } from "./format.js";
import { env, listOf, stopOnSignals } from "./util.js";
import { registryCallMetadata } from "../registry/security.js";
import { securityFrom, withSecurityFlags, type SecurityFlags } from "./security.js";
import { telemetryFrom, withTelemetryFlags, type TelemetryFlags } from "./telemetry.js";

const defaultRegistryUrl = "tcp://127.0.0.1:5002";

export function registryCommand(program: Command): void {
  const reg = withTelemetryFlags(
    withSecurityFlags(
      program
        .command("registry")
        .description(
          "run the NetworkService/NetworkServiceEndpoint registry (and, with a subcommand, query one)",
        ),
      "registry",
    ),
  )
    .option(
      "--listen-on <urls>",
      "comma-separated tcp://host:port or unix:///path (NSM_LISTEN_ON)",
      env("NSM_LISTEN_ON", registryDefaults.listenOn),
    )
    .option(
      "--store <kind>",
      "sqlite (durable), memory, or k8s (NetworkService/NetworkServiceEndpoint custom resources) (NSM_REGISTRY_STORE)",
      env("NSM_REGISTRY_STORE", "sqlite"),
    )
    .option(
      "--namespace <namespace>",
      "namespace of the custom resources, store k8s (NSM_NAMESPACE)",
      env("NSM_NAMESPACE", "default"),
    )
    .option(
      "--kubeconfig <path>",
      "kubeconfig file, store k8s (default: in-cluster, else KUBECONFIG or ~/.kube/config)",
    )
    .option(
      "--db <path>",
      "sqlite database file (NSM_REGISTRY_DB)",
      env("NSM_REGISTRY_DB", registryDefaults.dbPath),
    )
    .option(
      "--expire-period <duration>",
      "NSE registration lifetime, e.g. 1m (NSM_EXPIRE_PERIOD)",
      env("NSM_EXPIRE_PERIOD", "1m"),
    )
    .action(
      async (
        o: SecurityFlags &
          TelemetryFlags & {
            listenOn: string;
            store: string;
            db: string;
            namespace: string;
            kubeconfig?: string;
            expirePeriod: string;
          },
      ) => {
        if (o.store !== "sqlite" && o.store !== "memory" && o.store !== "k8s")
          throw new Error(`--store: "${o.store}" is not sqlite, memory or k8s`);
        const telemetry = await telemetryFrom(o, o.name);
        const running = await startRegistry({
          name: o.name,
          listenOn: listOf(o.listenOn),
          store: o.store,
          dbPath: o.db,
          namespace: o.namespace,
          kubeconfig: o.kubeconfig,
          expirePeriodMs: parseDuration(o.expirePeriod, "--expire-period"),
          security: await securityFrom(o, listOf(o.listenOn)),
        });
        stopOnSignals(async () => {
          await running.stop();
          await telemetry.stop();
        });
      },
    );

  const urlOption = [
    "--registry-url <url>",
    "registry to query (NSM_REGISTRY_URL)",
    env("NSM_REGISTRY_URL", defaultRegistryUrl),
  ] as const;
  const query = (cmd: Command): Command => withSecurityFlags(cmd, "nsm-cli").option(...urlOption);
  const outOption = ["-o, --output <format>", "table, yaml or json", "table"] as const;

  const ns = reg.command("ns").description("NetworkService records");
  query(ns.command("list"))
    .option(...outOption)
    .action((o: SecurityFlags & { registryUrl: string; output: string }) =>
      withClient(o, async (c) => {
        const list = await c.findServices();
        if (o.output === "table") {
          const rows = list.map((s) => [s.name, s.payload, String(s.matches.length)]);
          console.log(table(["NAME", "PAYLOAD", "MATCHES"], rows));
        } else print(list.map(serviceCrd), o.output);
      }),
    );
  query(ns.command("get <name>"))
    .option("-o, --output <format>", "yaml or json", "yaml")
    .action((name: string, o: SecurityFlags & { registryUrl: string; output: string }) =>
      withClient(o, async (c) => {
        const [found] = await c.findServices({ name });
        if (!found) throw new Error(`network service "${name}" not found`);
        print([serviceCrd(found)], o.output);
      }),
    );
  query(ns.command("apply"))
    .requiredOption(
      "-f, --file <file>",
      "YAML/JSON file with NetworkService (and NetworkServiceEndpoint) documents",
    )
    .action((o: SecurityFlags & { file: string; registryUrl: string }) =>
      withClient(o, async (c, md) => {
        for (const doc of readDocuments(o.file)) {
          if (doc.kind === "NetworkServiceEndpoint") {
            const nse = await c.registerEndpoint(NetworkServiceEndpoint.fromJSON(doc.spec), {
              metadata: await md(),
            });
            console.log(`networkserviceendpoint/${nse.name} registered`);
          } else {
            const s = await c.registerService(NetworkService.fromJSON(doc.spec), { metadata: await md() });
            console.log(`networkservice/${s.name} applied`);
          }
        }
      }),
    );
  query(ns.command("delete <name>")).action((name: string, o: SecurityFlags & { registryUrl: string }) =>
    withClient(o, async (c, md) => {
      await c.unregisterService(name, { metadata: await md() });
      console.log(`networkservice/${name} deleted`);
    }),
  );

  const nse = reg.command("nse").description("NetworkServiceEndpoint records");
  query(nse.command("list"))
    .option(...outOption)
    .option("--service <name>", "only endpoints of this network service")
    .option("-w, --watch", "keep streaming changes")
    .action((o: SecurityFlags & { registryUrl: string; output: string; service?: string; watch?: boolean }) =>
      withClient(o, async (c) => {
        const q = o.service ? { networkServiceNames: [o.service] } : {};
        if (!o.watch) {
          const list = await c.findEndpoints(q);
          if (o.output === "table") console.log(endpointTable(list));
          else print(list.map(endpointCrd), o.output);
          return;
        }
        const stream = c.watchEndpoints(q);
        process.once("SIGINT", () => stream.cancel());
        try {
          for await (const ev of stream) {
            const n = ev.networkServiceEndpoint!;
            if (o.output === "json") console.log(JSON.stringify({ deleted: ev.deleted, ...endpointCrd(n) }));
            else
              console.log(
                `${ev.deleted ? "DELETED" : "UPDATED"}  ${n.name}  ${n.networkServiceNames.join(",")}  ${n.url}`,
              );
          }
        } catch (err) {
          if ((err as { code?: number }).code !== 1) throw err; // 1 = CANCELLED: the user stopped watching
        }
      }),
    );
}

function endpointTable(list: NetworkServiceEndpoint[]): string {
  const rows = list.map((n) => [n.name, n.networkServiceNames.join(","), n.url, expiresIn(n)]);
  return table(["NAME", "SERVICES", "URL", "EXPIRES"], rows);
}

function print(docs: object[], format: string): void {
  if (format === "json") console.log(JSON.stringify(docs.length === 1 ? docs[0] : docs, null, 2));
  else console.log(yamlDocs(docs).trimEnd());
}

interface Document {
  kind: string;
  spec: Record<string, unknown>;
}

/** CRD documents (apiVersion/kind/metadata/spec) or bare specs; metadata.name fills an empty spec.name. */
export function readDocuments(file: string): Document[] {
  const text = readFileSync(file, "utf8");
  return parseAllDocuments(text).map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${file}: document ${i + 1}: ${d.errors[0]!.message}`);
    const obj = d.toJS() as Record<string, unknown> | null;
    if (!obj || typeof obj !== "object") throw new Error(`${file}: document ${i + 1} is not a mapping`);
    const kind = typeof obj.kind === "string" ? obj.kind : "NetworkService";
    if (kind !== "NetworkService" && kind !== "NetworkServiceEndpoint")
      throw new Error(`${file}: document ${i + 1}: unsupported kind "${kind}"`);
    const spec = { ...((obj.spec ?? obj) as Record<string, unknown>) };
    const metaName = (obj.metadata as { name?: unknown } | undefined)?.name;
    if (!spec.name && typeof metaName === "string") spec.name = metaName;
    return { kind, spec };
  });
}

/**
 * Runs `fn` with a client of the registry, as the identity the security flags give; `md()` is the metadata
 * (token and path) a write needs.
 */
async function withClient(
  o: SecurityFlags & { registryUrl: string },
  fn: (c: RegistryClient, md: () => Promise<Metadata>) => Promise<void>,
): Promise<void> {
  const security = await securityFrom(o);
  const url = o.registryUrl;
  const c = new RegistryClient(url, security.channelCredentials(url), security.channelOptions());
  try {
    await fn(c, async () =>
      registryCallMetadata(security.sign, undefined, o.name, await security.audience(url, c.grpc)),
    );
  } finally {
    c.close();
    security.close();
  }
}
