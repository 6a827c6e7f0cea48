// An emulated TF cluster in namespaces, for the TF e2e tests and bench/tf: a "gw" namespace holding the
// fabric (underlay bridge, 198.18.0.1), the config API emulator and the registry, routing to an "internet"
// namespace (203.0.113.10); computes node-<i> (198.18.0.1<i>) each with a vRouter agent emulator, nsmgr,
// TF forwarder and tf-vn endpoint (and optionally a kernel forwarder and icmp-responder, as a baseline).
// Every name carries the run's prefix; `stop()` removes processes, namespaces and files.
import { join } from "node:path";
import { VncClient } from "../../src/forwarder/tf/vnc.js";
import { tfKeys } from "../../src/forwarder/tf/keys.js";
import type { NsmClient } from "../../src/components/client.js";
import { host, type ProbeTarget } from "./healmesh.js";
import { Netns, inNs, ip } from "./netns.js";
import { startComponent, tempDir, type Component } from "./proc.js";

export const gwIp = "198.18.0.1";
export const internetIp = "203.0.113.10";
export const vncUrl = `http://${gwIp}:8082`;
export const nodeIp = (i: number): string => `198.18.0.1${i}`;

/** A probe target for a TF connection of `client`: its address to the VN's gateway, as it currently is. */
export function gatewayTarget(client: NsmClient): ProbeTarget {
  return () => {
    const c = client.connections()[0];
    const gw = c?.context?.extraContext[tfKeys.gateway];
    const src = host(c?.context?.ipContext?.srcIpAddrs[0]);
    return gw && src ? { src, dst: gw } : undefined;
  };
}

export interface NodeSpec {
  generation?: "r2011" | "r2005";
  /** Also run a kernel forwarder and an icmp-responder (service icmp-<i>) on this node. */
  kernel?: boolean;
}

export interface TfNode {
  name: string;
  ns: string;
  generation: "r2011" | "r2005";
  portsRoot: string;
  nsmgrSock: string;
  procs: Map<string, Component>;
}

export interface TfClusterOptions {
  nodes: NodeSpec[];
  /** Extra flags for every tf-vn endpoint. */
  nseArgs?: string[];
  services?: string;
  tokenLifetime?: string;
  pollTimeout?: string;
}

export class TfCluster {
  readonly net = new Netns("nsmtf");
  readonly dir = tempDir("nsm-tf-");
  readonly nodes: TfNode[] = [];
  readonly procs: Component[] = [];
  gw = "";
  inet = "";
  config!: Component;
  /** The test talks to the config API over a unix socket: no traffic from the root namespace. */
  vnc = new VncClient({ url: vncUrl, socketPath: join(this.dir.path, "vnc.sock") });

  constructor(readonly opts: TfClusterOptions) {}

  sock(n: string): string {
    return `unix://${join(this.dir.path, `${n}.sock`)}`;
  }

  async start(): Promise<void> {
    const { net } = this;
    const p = net.prefix;
    this.gw = net.add("gw");
    this.inet = net.add("inet");
    ip(["-n", this.gw, "link", "add", `${p}br`, "mtu", "9000", "type", "bridge"]);
    ip(["-n", this.gw, "addr", "add", `${gwIp}/24`, "dev", `${p}br`]);
    ip(["-n", this.gw, "link", "set", `${p}br`, "up"]);
    net.wire(this.gw, "203.0.113.1/24", this.inet, `${internetIp}/24`, "i");
    ip(["-n", this.inet, "route", "add", "default", "via", "203.0.113.1"]);
    inNs(this.gw, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // Floating IPs live on the computes' fabric interfaces: the gateway reaches them on the fabric.
    ip(["-n", this.gw, "route", "add", "198.51.100.0/24", "dev", `${p}br`]);
    for (let i = 1; i <= this.opts.nodes.length; i++) {
      const ns = net.add(`node${i}`);
      const a = `${p}n${i}a`;
      const b = `${p}n${i}b`;
      ip([
        "-n",
        this.gw,
        "link",
        "add",
        a,
        "mtu",
        "9000",
        "type",
        "veth",
        "peer",
        "name",
        b,
        "mtu",
        "9000",
        "netns",
        ns,
      ]);
      ip(["-n", this.gw, "link", "set", a, "master", `${p}br`, "up"]);
      ip(["-n", ns, "addr", "add", `${nodeIp(i)}/24`, "dev", b]);
      ip(["-n", ns, "link", "set", b, "up"]);
      ip(["-n", ns, "route", "add", "default", "via", gwIp]);
      this.nodes.push({
        name: `node-${i}`,
        ns,
        generation: this.opts.nodes[i - 1]!.generation ?? "r2011",
        portsRoot: join(this.dir.path, `ports-${i}`),
        nsmgrSock: this.sock(`nsmgr-${i}`),
        procs: new Map(),
      });
    }
    this.config = await this.startConfig();
    this.procs.push(
      await startComponent(
        ["registry", "--store", "memory", "--listen-on", `tcp://${gwIp}:5002`],
        "registry serving",
        {},
        20_000,
        this.gw,
      ),
    );
    await Promise.all(this.nodes.map((n, i) => this.startNode(n, i + 1)));
  }

  async startConfig(): Promise<Component> {
    const args = [
      "tf-emulator",
      "config",
      "--listen",
      `${gwIp}:8082`,
      "--unix-socket",
      join(this.dir.path, "vnc.sock"),
      "--state-file",
      join(this.dir.path, "vnc.json"),
    ];
    this.nodes.forEach((n, i) => args.push("--compute", `${n.name}=${nodeIp(i + 1)}`));
    const c = await startComponent(args, "tf config API emulator ready", {}, 20_000, this.gw);
    this.procs.push(c);
    this.config = c;
    return c;
  }

  async startAgent(n: TfNode): Promise<Component> {
    const c = await startComponent(
      [
        "tf-emulator",
        "agent",
        "--hostname",
        n.name,
        "--config-url",
        vncUrl,
        "--ports-root",
        n.portsRoot,
        "--generation",
        n.generation,
        "--sync-interval",
        "300ms",
        "--stale-cleanup",
        "2s",
      ],
      "vRouter agent emulator ready",
      {},
      20_000,
      n.ns,
    );
    this.track(n, "agent", c);
    return c;
  }

  async startTfForwarder(n: TfNode, i: number, extra: string[] = []): Promise<Component> {
    const c = await startComponent(
      [
        "forwarder",
        "tf",
        "--name",
        `fwd-tf-${i}`,
        "--listen-on",
        this.sock(`fwd-tf-${i}`),
        "--connect-to",
        n.nsmgrSock,
        "--agent-generation",
        n.generation,
        "--port-dir",
        join(n.portsRoot, "vm"),
        "--poll-timeout",
        this.opts.pollTimeout ?? "100ms",
        "--poll-retries",
        "30",
        "--max-token-lifetime",
        this.opts.tokenLifetime ?? "10m",
        ...extra,
      ],
      "forwarder ready",
      {},
      20_000,
      n.ns,
    );
    this.track(n, "fwd-tf", c);
    return c;
  }

  async startNse(n: TfNode, i: number, extra: string[] = []): Promise<Component> {
    const c = await startComponent(
      [
        "nse",
        "tf-vn",
        "--name",
        `nse-tf-${i}`,
        "--listen-on",
        this.sock(`nse-tf-${i}`),
        "--connect-to",
        n.nsmgrSock,
        "--node-name",
        n.name,
        "--vnc-url",
        vncUrl,
        "--services",
        this.opts.services ?? "external",
        "--max-token-lifetime",
        this.opts.tokenLifetime ?? "10m",
        ...(this.opts.nseArgs ?? []),
        ...extra,
      ],
      "endpoint ready",
      {},
      20_000,
      n.ns,
    );
    this.track(n, "nse-tf", c);
    return c;
  }

  private async startNode(n: TfNode, i: number): Promise<void> {
    await this.startAgent(n);
    this.track(
      n,
      "nsmgr",
      await startComponent(
        [
          "nsmgr",
          "--name",
          `nsmgr-${i}`,
          "--listen-on",
          `${n.nsmgrSock},tcp://${nodeIp(i)}:5001`,
          "--registry-url",
          `tcp://${gwIp}:5002`,
        ],
        "nsmgr ready",
        { NODE_NAME: n.name },
        20_000,
        n.ns,
      ),
    );
    await this.startTfForwarder(n, i);
    await this.startNse(n, i);
    if (this.opts.nodes[i - 1]!.kernel) {
      this.track(
        n,
        "fwd-kernel",
        await startComponent(
          [
            "forwarder",
            "kernel",
            "--name",
            `fwd-k-${i}`,
            "--listen-on",
            this.sock(`fwd-k-${i}`),
            "--connect-to",
            n.nsmgrSock,
            "--tunnel-ip",
            nodeIp(i),
          ],
          "forwarder ready",
          {},
          20_000,
          n.ns,
        ),
      );
      this.track(
        n,
        "nse-icmp",
        await startComponent(
          [
            "nse",
            "icmp-responder",
            "--name",
            `nse-icmp-${i}`,
            "--listen-on",
            this.sock(`nse-icmp-${i}`),
            "--connect-to",
            n.nsmgrSock,
            "--services",
            `icmp-${i}`,
            "--cidr",
            `169.254.${i}.0/24`,
            // Its interfaces in a namespace of its own: an endpoint may not be handed its own namespace.
            "--netns",
            this.net.path(this.net.add(`icmp${i}`)),
          ],
          "endpoint ready",
          {},
          20_000,
          n.ns,
        ),
      );
    }
  }

  private track(n: TfNode, role: string, c: Component): void {
    n.procs.set(role, c);
    this.procs.push(c);
  }

  /** Creates the VNs of the tests: `external` (SNAT through a logical router) and `public` with a FIP pool. */
  async provision(extra: { name: string; cidr: string | string[] }[] = []): Promise<void> {
    const subnet = (cidr: string) => {
      const [prefix, len] = cidr.split("/");
      return { subnet: { ip_prefix: prefix, ip_prefix_len: Number(len) } };
    };
    const vn = (name: string, cidr: string | string[], props: Record<string, unknown> = {}) =>
      this.vnc.create("virtual-network", {
        fq_name: ["default-domain", "k8s-default", name],
        parent_type: "project",
        network_ipam_refs: [
          {
            to: ["default-domain", "default-project", "default-network-ipam"],
            attr: { ipam_subnets: (Array.isArray(cidr) ? cidr : [cidr]).map(subnet) },
          },
        ],
        ...props,
      });
    await vn("external", "100.64.10.0/24");
    await vn("public", "198.51.100.0/24", { router_external: true });
    await this.vnc.create("floating-ip-pool", {
      fq_name: ["default-domain", "k8s-default", "public", "pool"],
      parent_type: "virtual-network",
    });
    // As TF/Neutron attach an internal network to a router: a router-interface VMI in it, referenced by the
    // logical router, whose external gateway is a ref to the public VN.
    await this.vnc.create("virtual-machine-interface", {
      fq_name: ["default-domain", "k8s-default", "lr-port-external"],
      parent_type: "project",
      virtual_machine_interface_device_owner: "network:router_interface",
      virtual_network_refs: [{ to: ["default-domain", "k8s-default", "external"] }],
    });
    await this.vnc.create("logical-router", {
      fq_name: ["default-domain", "k8s-default", "lr"],
      parent_type: "project",
      virtual_network_refs: [
        {
          to: ["default-domain", "k8s-default", "public"],
          attr: { logical_router_virtual_network_type: "ExternalGateway" },
        },
      ],
      virtual_machine_interface_refs: [{ to: ["default-domain", "k8s-default", "lr-port-external"] }],
    });
    for (const e of extra) await vn(e.name, e.cidr);
  }

  /** Calls a node's agent (127.0.0.1:9091 inside the node's namespace). */
  agentCall(
    n: TfNode,
    method: string,
    path: string,
    body?: string,
  ): { status: number; statusText: string; contentType: string; body: string } {
    const script = `fetch("http://127.0.0.1:9091${path}",{method:${JSON.stringify(method)}${
      body === undefined ? "" : `,body:${JSON.stringify(body)}`
    }}).then(async r=>console.log(JSON.stringify({status:r.status,statusText:r.statusText,contentType:r.headers.get("content-type"),body:await r.text()})))`;
    const r = inNs(n.ns, [process.execPath, "-e", script]);
    return JSON.parse(r.out.trim()) as {
      status: number;
      statusText: string;
      contentType: string;
      body: string;
    };
  }

  agentGet(n: TfNode, path: string): { status: number; body: string } {
    return this.agentCall(n, "GET", path);
  }

  async stop(): Promise<void> {
    for (const c of [...this.procs].reverse()) await c.stop().catch(() => undefined);
    this.vnc.close();
    this.net.cleanup();
    this.dir.remove();
  }
}
