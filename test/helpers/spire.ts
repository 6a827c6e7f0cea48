// Test support: a private SPIRE deployment (one spire-server, one spire-agent) in a temp directory, for tests
// that want real SPIRE-issued X.509-SVIDs. Everything listens on 127.0.0.1 or unix sockets in that directory,
// and stop() kills both processes by pid and removes the directory.
//
// - server: sqlite datastore, in-memory keys, the `join_token` node attestor, trust domain `nsm.test`;
// - agent: attests with a join token the server generated, trusts the server's bundle (no insecure
//   bootstrap), the `unix` workload attestor, its Workload API socket at `<dir>/agent.sock`.
//
// Identities per process: every test process runs as root, so `unix:uid:0` alone would give all of them the
// same entries. Give each workload its own primary group instead: an entry with selectors `unix:uid:0` and
// `unix:gid:<n>` (see workloadSelectors) matches only a process whose primary gid is n, and a root process
// can start a child with `spawn(cmd, args, { gid: n })` (libuv also clears the child's supplementary groups,
// so it does not match the parent's gid-0 entry). The gid need not exist in /etc/group. A process that
// matches several entries receives all of them; WorkloadApiSource's `spiffeId` option picks one.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const spireVersion = "v1.13.3";

/** Where scripts/build-spire.sh puts the binaries: $NSM_SPIRE_BIN_DIR, else <repo>/.cache/spire/bin. */
export function spireBinDir(): string {
  return process.env.NSM_SPIRE_BIN_DIR ?? new URL("../../.cache/spire/bin", import.meta.url).pathname;
}

/** Paths of spire-server and spire-agent, or undefined when they have not been built. */
export function spireBinaries(): { server: string; agent: string } | undefined {
  const dir = spireBinDir();
  const server = join(dir, "spire-server");
  const agent = join(dir, "spire-agent");
  return existsSync(server) && existsSync(agent) ? { server, agent } : undefined;
}

/** Selectors for one workload identity: root's processes whose primary group is `gid`. */
export function workloadSelectors(gid: number, uid = 0): string[] {
  return [`unix:uid:${uid}`, `unix:gid:${gid}`];
}

export interface SpireEntry {
  spiffeId: string;
  /** `type:value` selectors, all of which a workload must have (e.g. workloadSelectors(4711)). */
  selectors: string[];
  /** Lifetime of the SVIDs of this entry; default the server's (SpireOptions.x509SvidTtl). */
  x509SvidTtlSeconds?: number;
  hint?: string;
}

export interface SpireOptions {
  /** Default "nsm.test". */
  trustDomain?: string;
  /** The server's default_x509_svid_ttl (Go duration); default "1m". The agent rotates at about half. */
  x509SvidTtl?: string;
  /** Registration entries made before the agent starts (so its first sync already has them). */
  entries?: SpireEntry[];
  /** How long to wait for each process to come up; default 60 s. */
  timeoutMs?: number;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  log: string[];
}

function startProcess(cmd: string, args: string[], cwd: string): Proc {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } });
  const log: string[] = [];
  const keep = (d: Buffer): void => {
    log.push(d.toString());
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited, log };
}

async function stopProcess(p: Proc | undefined, graceMs = 5_000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null || p.child.pid === undefined) return;
  p.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      p.child.kill("SIGKILL");
      resolve();
    }, graceMs);
  });
  await Promise.race([p.exited, killed]);
  clearTimeout(timer);
  await p.exited;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  log: () => string,
) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${what} not within ${timeoutMs} ms${last ? ` (last: ${last})` : ""}; log:\n${log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export class Spire {
  readonly serverSocket: string;
  readonly agentSocket: string;
  /** The agent's Workload API address, for WorkloadApiSource or SPIFFE_ENDPOINT_SOCKET. */
  readonly workloadApiAddr: string;
  /** The server's trust bundle (PEM), what peers' certificates must chain to. */
  bundlePem = "";
  /** The agent's SPIFFE ID (`spiffe://<td>/spire/agent/join_token/<token>`): the parent of every entry. */
  agentId = "";
  private server: Proc | undefined;
  private agent: Proc | undefined;

  private constructor(
    readonly dir: string,
    readonly trustDomain: string,
    private readonly bins: { server: string; agent: string },
    private readonly timeoutMs: number,
  ) {
    this.serverSocket = join(dir, "server.sock");
    this.agentSocket = join(dir, "agent.sock");
    this.workloadApiAddr = `unix://${this.agentSocket}`;
  }

  /** Starts the server, makes the entries, then starts and attests the agent. Stops everything on failure. */
  static async start(opts: SpireOptions = {}): Promise<Spire> {
    const bins = spireBinaries();
    if (!bins) throw new Error(`no SPIRE binaries in ${spireBinDir()}: run scripts/build-spire.sh`);
    const dir = mkdtempSync(join(tmpdir(), "nsm-ts-spire-"));
    const spire = new Spire(dir, opts.trustDomain ?? "nsm.test", bins, opts.timeoutMs ?? 60_000);
    try {
      await spire.startServer(opts.x509SvidTtl ?? "1m");
      for (const e of opts.entries ?? []) await spire.createEntry(e);
      await spire.startAgent();
      return spire;
    } catch (e) {
      await spire.stop();
      throw e;
    }
  }

  /** The last lines both processes logged, for failure messages. */
  logs(): string {
    const tail = (p: Proc | undefined): string => (p ? p.log.join("").split("\n").slice(-40).join("\n") : "");
    return `--- spire-server ---\n${tail(this.server)}\n--- spire-agent ---\n${tail(this.agent)}`;
  }

  /** Runs a spire-server CLI command against this server; resolves with its stdout. */
  async serverCli(args: string[]): Promise<string> {
    const [cmd, ...rest] = args;
    const { stdout } = await run(this.bins.server, [cmd ?? "", ...rest, "-socketPath", this.serverSocket], {
      timeout: 30_000,
    });
    return stdout;
  }

  /** Registers a workload under this agent; returns the entry ID. */
  async createEntry(e: SpireEntry): Promise<string> {
    const args = ["entry", "create", "-parentID", this.agentId, "-spiffeID", e.spiffeId];
    for (const s of e.selectors) args.push("-selector", s);
    if (e.x509SvidTtlSeconds !== undefined) args.push("-x509SVIDTTL", String(e.x509SvidTtlSeconds));
    if (e.hint !== undefined) args.push("-hint", e.hint);
    const [cmd, sub, ...rest] = args;
    const out = await run(
      this.bins.server,
      [cmd!, sub!, ...rest, "-socketPath", this.serverSocket, "-output", "json"],
      {
        timeout: 30_000,
      },
    ).catch((err: Error & { stderr?: string }) => {
      throw new Error(`spire-server entry create ${e.spiffeId}: ${err.stderr ?? err.message}`);
    });
    const parsed = JSON.parse(out.stdout) as { results?: { entry?: { id?: string } }[] };
    const id = parsed.results?.[0]?.entry?.id;
    if (!id) throw new Error(`spire-server entry create ${e.spiffeId}: no entry ID in ${out.stdout}`);
    return id;
  }

  /** Kills both processes by pid and removes the directory. Safe to call twice. */
  async stop(): Promise<void> {
    await stopProcess(this.agent);
    await stopProcess(this.server);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async startServer(x509SvidTtl: string): Promise<void> {
    const port = await freePort();
    const data = join(this.dir, "server-data");
    const conf = join(this.dir, "server.conf");
    writeFileSync(
      conf,
      `server {
  bind_address = "127.0.0.1"
  bind_port = "${port}"
  socket_path = "${this.serverSocket}"
  trust_domain = "${this.trustDomain}"
  data_dir = "${data}"
  log_level = "INFO"
  default_x509_svid_ttl = "${x509SvidTtl}"
  agent_ttl = "1h"
  ca_ttl = "24h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(data, "datastore.sqlite3")}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`,
    );
    this.serverPort = port;
    this.server = startProcess(this.bins.server, ["run", "-config", conf], this.dir);
    const exited = this.server.exited.then(() => {
      throw new Error(`spire-server exited at start:\n${this.logs()}`);
    });
    const healthy = until(
      "spire-server healthy",
      this.timeoutMs,
      async () => ((await this.serverCli(["healthcheck"])).includes("healthy") ? true : undefined),
      () => this.logs(),
    );
    await Promise.race([healthy, exited]);
    exited.catch(() => undefined); // it may exit later, at stop()
    this.bundlePem = await this.serverCli(["bundle", "show", "-format", "pem"]);
    const token = /Token: (\S+)/.exec(await this.serverCli(["token", "generate", "-ttl", "600"]))?.[1];
    if (!token) throw new Error("spire-server token generate printed no token");
    this.joinToken = token;
    this.agentId = `spiffe://${this.trustDomain}/spire/agent/join_token/${token}`;
  }

  private serverPort = 0;
  private joinToken = "";

  private async startAgent(): Promise<void> {
    const bundleFile = join(this.dir, "bootstrap-bundle.pem");
    writeFileSync(bundleFile, this.bundlePem);
    const conf = join(this.dir, "agent.conf");
    writeFileSync(
      conf,
      `agent {
  data_dir = "${join(this.dir, "agent-data")}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "${this.serverPort}"
  socket_path = "${this.agentSocket}"
  trust_bundle_path = "${bundleFile}"
  trust_domain = "${this.trustDomain}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
    );
    this.agent = startProcess(
      this.bins.agent,
      ["run", "-config", conf, "-joinToken", this.joinToken],
      this.dir,
    );
    const exited = this.agent.exited.then(() => {
      throw new Error(`spire-agent exited at start:\n${this.logs()}`);
    });
    const healthy = until(
      "spire-agent healthy",
      this.timeoutMs,
      async () => {
        const { stdout } = await run(this.bins.agent, ["healthcheck", "-socketPath", this.agentSocket], {
          timeout: 10_000,
        });
        return stdout.includes("healthy") ? true : undefined;
      },
      () => this.logs(),
    );
    await Promise.race([healthy, exited]);
    exited.catch(() => undefined);
  }
}
