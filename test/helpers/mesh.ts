// Builds control-plane topologies of real processes: a registry, nsmgrs, forwarders and endpoints, each on
// its own sockets in a per-test temp dir. Everything started is stopped by `down()`.
import { join } from "node:path";
import { startComponent, tempDir, type Component } from "./proc.js";

export class Mesh {
  readonly dir = tempDir("nsm-mesh-");
  readonly procs: Component[] = [];
  registryUrl = "";

  sock(name: string): string {
    return `unix://${join(this.dir.path, `${name}.sock`)}`;
  }

  private async start(args: string[], ready: string, env: Record<string, string> = {}): Promise<Component> {
    const c = await startComponent(args, ready, env);
    this.procs.push(c);
    return c;
  }

  async registry(): Promise<Component> {
    const c = await this.start(
      ["registry", "--store", "memory", "--listen-on", "tcp://127.0.0.1:0"],
      "registry serving",
    );
    this.registryUrl = c.urls[0]!;
    return c;
  }

  /** An nsmgr on a unix socket plus tcp; returns its unix URL as `url` and tcp as `publicUrl`. */
  async nsmgr(
    name: string,
    env: Record<string, string> = {},
  ): Promise<{ proc: Component; url: string; publicUrl: string }> {
    const proc = await this.start(
      [
        "nsmgr",
        "--name",
        name,
        "--listen-on",
        `${this.sock(name)},tcp://127.0.0.1:0`,
        "--registry-url",
        this.registryUrl,
      ],
      "nsmgr ready",
      { NODE_NAME: name, ...env },
    );
    return { proc, url: this.sock(name), publicUrl: proc.urls.find((u) => u.startsWith("tcp://"))! };
  }

  forwarder(
    name: string,
    nsmgrUrl: string,
    labels = "p2p=true",
    env: Record<string, string> = {},
  ): Promise<Component> {
    return this.start(
      [
        "forwarder",
        "noop",
        "--name",
        name,
        "--listen-on",
        this.sock(name),
        "--connect-to",
        nsmgrUrl,
        "--labels",
        labels,
      ],
      "forwarder ready",
      env,
    );
  }

  nse(
    name: string,
    nsmgrUrl: string,
    services: string,
    cidr: string,
    extra: string[] = [],
    env: Record<string, string> = {},
  ): Promise<Component> {
    return this.start(
      [
        "nse",
        "icmp-responder",
        "--name",
        name,
        "--listen-on",
        this.sock(name),
        "--connect-to",
        nsmgrUrl,
        "--services",
        services,
        "--cidr",
        cidr,
        ...extra,
      ],
      "endpoint ready",
      env,
    );
  }

  async down(): Promise<void> {
    for (const p of this.procs.reverse()) await p.stop().catch(() => undefined);
    this.dir.remove();
  }
}
