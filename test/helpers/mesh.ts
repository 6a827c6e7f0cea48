// Builds control-plane topologies of real processes: a registry, nsmgrs, forwarders and endpoints, each on
// its own sockets in a per-test temp dir. Everything started is stopped by `down()`.
//
// By default the components run explicitly insecure (see proc.ts). `new Mesh({ ca })` makes a secure mesh:
// every component gets an X.509-SVID of `ca` for spiffe://<trust domain>/<name> (files in the mesh's temp
// dir, passed as NSM_CERT_FILE/NSM_KEY_FILE/NSM_CA_FILE), and `svid(name)` issues one for in-process clients.
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import type { TrustDomainCa } from "../../src/security/ca.js";
import type { IdentityFiles } from "../../src/security/identity.js";
import { startComponent, tempDir, type Component } from "./proc.js";

export interface MeshOptions {
  /** Run every component with an SVID of this CA (a secure mesh); default: insecure components. */
  ca?: TrustDomainCa;
  /** PEM of further CA certificates every component (and svid()'s bundle) trusts besides `ca`'s root. */
  extraBundlePem?: string;
}

export class Mesh {
  readonly dir = tempDir("nsm-mesh-");
  readonly procs: Component[] = [];
  registryUrl = "";

  constructor(readonly opts: MeshOptions = {}) {}

  /** The SPIFFE ID a component called `name` gets in a secure mesh. */
  idOf(name: string): string {
    if (!this.opts.ca) throw new Error("idOf: this mesh is insecure (no ca)");
    return `spiffe://${this.opts.ca.trustDomain}/${name}`;
  }

  /** Issues an SVID for `name` (spiffe://<td>/<name>) into the mesh's dir: cert, key and bundle files. */
  async svid(name: string, ttlMs = 3_600_000): Promise<IdentityFiles> {
    const ca = this.opts.ca;
    if (!ca) throw new Error("svid: this mesh is insecure (no ca)");
    const files = await ca.writeFiles(join(this.dir.path, "svid"), name, this.idOf(name), ttlMs);
    if (this.opts.extraBundlePem) await appendFile(files.caFile, this.opts.extraBundlePem);
    return { certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile };
  }

  sock(name: string): string {
    return `unix://${join(this.dir.path, `${name}.sock`)}`;
  }

  /** The identity env of component `name` in a secure mesh (nothing in an insecure one). */
  private async identityEnv(name: string): Promise<Record<string, string>> {
    if (!this.opts.ca) return {};
    const f = await this.svid(name);
    return { NSM_CERT_FILE: f.certFile, NSM_KEY_FILE: f.keyFile, NSM_CA_FILE: f.caFile };
  }

  private async start(
    args: string[],
    ready: string,
    env: Record<string, string> = {},
    name?: string,
  ): Promise<Component> {
    const identity = name === undefined ? {} : await this.identityEnv(name);
    const c = await startComponent(args, ready, { ...identity, ...env });
    this.procs.push(c);
    return c;
  }

  async registry(): Promise<Component> {
    // A secure registry is named after its SVID; an insecure one keeps the default name.
    const name = this.opts.ca ? ["--name", "registry"] : [];
    const c = await this.start(
      ["registry", ...name, "--store", "memory", "--listen-on", "tcp://127.0.0.1:0"],
      "registry serving",
      {},
      "registry",
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
      name,
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
      name,
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
      name,
    );
  }

  async down(): Promise<void> {
    for (const p of this.procs.reverse()) await p.stop().catch(() => undefined);
    this.dir.remove();
  }
}
