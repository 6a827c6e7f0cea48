// A two-node mesh for heal scenarios (test/e2e/heal.test.ts and bench/heal.ts): node1 and node2 joined by an
// underlay veth; registry on node1; nsmgr and kernel forwarder per node; icmp-responders for `local-svc` (pod
// e1 on node1) and `remote-svc` (pod e2 on node2); clients in this process with healing on. A Probe pings
// across a connection every 10 ms and measures the outage (last reply before to first reply after, or to the
// end when none came) and the probes lost. A second icmp-responder for `remote-svc` (pod e2b) takes over when the first dies. Everything carries a per-run prefix and is removed by stop().
import { join } from "node:path";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { ping } from "../../src/dataplane/index.js";
import type { Connection } from "../../src/api/connection.js";
import type { HealEvent } from "../../src/networkservice/heal/heal.js";
import { writeFileSync } from "node:fs";
import { Netns, inNs } from "./netns.js";
import { startComponent, tempDir, type Component } from "./proc.js";

const nsmBin = new URL("../../bin/nsm.js", import.meta.url).pathname;

export const host = (cidr: string | undefined): string => (cidr ?? "").split("/")[0]!;

export class HealMesh {
  readonly net = new Netns("nsmh");
  readonly dir = tempDir("nsm-heal-");
  readonly procs = new Map<string, Component>();
  node1 = "";
  node2 = "";
  e1 = "";
  e2 = "";
  e2b = "";
  /** Every heal the mesh's clients completed, in order. */
  readonly healed: HealEvent[] = [];

  sock(n: string): string {
    return `unix://${join(this.dir.path, `${n}.sock`)}`;
  }

  private readonly specs: Record<
    string,
    () => { args: string[]; ready: string; env?: Record<string, string>; netns: string }
  > = {
    registry: () => ({
      args: ["registry", "--store", "memory", "--listen-on", "tcp://198.18.0.1:5002"],
      ready: "registry serving",
      netns: this.node1,
    }),
    "nsmgr-1": () => this.nsmgr(1),
    "nsmgr-2": () => this.nsmgr(2),
    "fwd-1": () => this.fwd(1),
    "fwd-2": () => this.fwd(2),
    "nse-local": () => this.nse("nse-local", 1, "local-svc", "169.254.20.0/24", this.e1),
    "nse-remote": () => this.nse("nse-remote", 2, "remote-svc", "169.254.21.0/24", this.e2, "site=a"),
    // A second endpoint of the remote service (same pool): where a client goes when the first one dies.
    "nse-remote-b": () => this.nse("nse-remote-b", 2, "remote-svc", "169.254.21.0/24", this.e2b, "site=b"),
  };

  private nsmgr(n: number) {
    return {
      args: [
        "nsmgr",
        "--name",
        `nsmgr-${n}`,
        "--listen-on",
        `${this.sock(`nsmgr-${n}`)},tcp://198.18.0.${n}:5001`,
        "--registry-url",
        "tcp://198.18.0.1:5002",
      ],
      ready: "nsmgr ready",
      env: { NODE_NAME: `node-${n}` },
      netns: n === 1 ? this.node1 : this.node2,
    };
  }

  private fwd(n: number) {
    return {
      args: [
        "forwarder",
        "kernel",
        "--name",
        `fwd-${n}`,
        "--listen-on",
        this.sock(`fwd-${n}`),
        "--connect-to",
        this.sock(`nsmgr-${n}`),
        "--tunnel-ip",
        `198.18.0.${n}`,
      ],
      ready: "forwarder ready",
      netns: n === 1 ? this.node1 : this.node2,
    };
  }

  private nse(name: string, n: number, service: string, cidr: string, pod: string, labels?: string) {
    return {
      args: [
        "nse",
        "icmp-responder",
        "--name",
        name,
        "--listen-on",
        this.sock(name),
        "--connect-to",
        this.sock(`nsmgr-${n}`),
        "--services",
        service,
        "--cidr",
        cidr,
        "--netns",
        this.net.path(pod),
        ...(labels ? ["--labels", labels] : []),
      ],
      ready: "endpoint ready",
      netns: n === 1 ? this.node1 : this.node2,
    };
  }

  async start(): Promise<void> {
    this.node1 = this.net.add("node1");
    this.node2 = this.net.add("node2");
    this.e1 = this.net.add("e1");
    this.e2 = this.net.add("e2");
    this.e2b = this.net.add("e2b");
    this.net.wire(this.node1, "198.18.0.1/24", this.node2, "198.18.0.2/24");
    await this.run("registry");
    // The remote service is registered by the operator (this run), who may change it later.
    this.applyService("remote-svc", []);
    await Promise.all([this.run("nsmgr-1"), this.run("nsmgr-2")]);
    await Promise.all(["fwd-1", "fwd-2", "nse-local", "nse-remote", "nse-remote-b"].map((n) => this.run(n)));
  }

  /** Registers (or changes) a NetworkService through `nsm registry ns apply`, from inside node1. */
  applyService(name: string, matches: object[]): void {
    const file = join(this.dir.path, `ns-${name}.json`);
    writeFileSync(file, JSON.stringify({ name, payload: "ETHERNET", matches }));
    const r = inNs(this.node1, [
      "env",
      "NSM_INSECURE=true",
      process.execPath,
      nsmBin,
      "registry",
      "ns",
      "apply",
      "-f",
      file,
      "--registry-url",
      "tcp://198.18.0.1:5002",
    ]);
    if (r.code !== 0) throw new Error(`ns apply ${name}: ${r.out}`);
  }

  /** (Re)starts a component by its name. */
  async run(name: string): Promise<Component> {
    const s = this.specs[name]!();
    const c = await startComponent(s.args, s.ready, s.env ?? {}, 20_000, s.netns);
    this.procs.set(name, c);
    return c;
  }

  /** kill -9, then start again (after `downMs`). */
  async restart(name: string, downMs = 0): Promise<void> {
    await this.procs.get(name)!.kill();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.run(name);
  }

  client(name: string, pod: string, nodeN = 1): NsmClient {
    return new NsmClient({
      name,
      nsmgrUrl: this.sock(`nsmgr-${nodeN}`),
      netnsPath: this.net.path(pod),
      security: createSecurity({ name, insecure: true }),
      heal: { onHealed: (e) => this.healed.push(e) },
    });
  }

  async stop(): Promise<void> {
    for (const c of [...this.procs.values()].reverse()) await c.stop().catch(() => undefined);
    this.net.cleanup();
    this.dir.remove();
  }
}

export interface OutageReport {
  /**
   * Longest time without a reply while probing, ms: from the last reply (or the probe's start) to the next
   * one, and to the end of probing when the path never came back.
   */
  outageMs: number;
  lost: number;
  sent: number;
  /** A last ping on the connection's addresses at the end (its current ones, after a reselect) was answered. */
  flowsAtEnd: boolean;
}

/** The two ends of a connection to probe, or undefined while the client holds none. */
export type ProbeTarget = () => { src: string; dst: string } | undefined;

/** The addresses of a connection, as its IP context gives them. */
export function addrsOf(conn: Connection | undefined): { src: string; dst: string } | undefined {
  const src = host(conn?.context?.ipContext?.srcIpAddrs[0]);
  const dst = host(conn?.context?.ipContext?.dstIpAddrs[0]);
  return src && dst ? { src, dst } : undefined;
}

/**
 * Pings every 10 ms inside `netnsPath`, each time to the target's *current* addresses (a reselect may give the
 * connection new ones), until stopped. A probe with no target, or whose ping errs, counts as lost.
 */
export class Probe {
  private running = true;
  private readonly started = performance.now();
  private lastOk = this.started;
  private maxGap = 0;
  private lost = 0;
  private sent = 0;
  private done: Promise<void>;

  constructor(
    private readonly netnsPath: string,
    private readonly target: ProbeTarget,
  ) {
    this.done = (async () => {
      while (this.running) {
        const t = performance.now();
        this.sent++;
        const ok = await this.once(100);
        const now = performance.now();
        if (ok) {
          this.maxGap = Math.max(this.maxGap, now - this.lastOk);
          this.lastOk = now;
        } else {
          this.lost++;
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 10 - (performance.now() - t))));
      }
    })();
  }

  private async once(timeoutMs: number, count = 1): Promise<boolean> {
    const to = this.target();
    if (!to) return false;
    try {
      return (await ping(this.netnsPath, { ...to, count, timeoutMs, stopAfterReplies: 1 })).received > 0;
    } catch {
      return false;
    }
  }

  async stop(): Promise<OutageReport> {
    this.running = false;
    await this.done;
    // A path that never came back is out from its last reply until now, not for the last gap it had.
    const outageMs = Math.round(Math.max(this.maxGap, performance.now() - this.lastOk));
    const flowsAtEnd = await this.once(1000, 3);
    return { outageMs, lost: this.lost, sent: this.sent, flowsAtEnd };
  }
}
