// A client of the vRouter agent's port API (127.0.0.1:9091 on every compute; spec §1), driven the way TF's own
// CNI drives it (§1.5): poll /vm-cfg until the agent has the VM's config, write the port file, POST /vm, poll
// GET /vm/<uuid> until the port is ready, and on delete DELETE /vm plus the caller's own port files.
import http from "node:http";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalCidr, formatIp, tryParseIp } from "../../networkservice/ipam/cidr.js";
import { timedTfCall } from "./metrics.js";

/** Which agent generation: `/vm-cfg` and the port directory are keyed by VM name from R2011 on (§1.2). */
export type AgentGeneration = "r2011" | "r2005";

/** The body of POST /vm (all strings, §1.3). */
export interface VmPort {
  "vm-uuid": string;
  "vm-name": string;
  "vm-id": string;
  "vmi-uuid": string;
  "vn-uuid": string;
  "host-ifname": string;
  "vm-ifname": string;
  "vm-namespace": string;
  time: string;
}

/** One entry of GET /vm/<uuid> (§1.4). */
export interface PortInfo {
  id: string;
  "instance-id": string;
  "vn-id": string;
  "mac-address": string;
  "system-name": string;
  /** IPv4, when the VN has an IPv4 subnet. */
  "ip-address"?: string;
  plen?: number;
  gateway?: string;
  "dns-server"?: string;
  /** IPv6, when the VN has an IPv6 subnet; the agent gives no IPv6 prefix length. */
  "v6-ip-address"?: string;
  "v6-gateway"?: string;
  "v6-dns-server"?: string;
}

/**
 * The port's addresses as the agent reports them: "<v4>/<plen>" (bare when plen is missing) and the bare
 * IPv6 address, canonical. An unspecified address ("0.0.0.0", "::", as an agent may print for a family the
 * port lacks) counts as absent.
 */
export function agentAddresses(doc: PortInfo): { v4?: string; v6?: string } {
  const v4 = hostText(doc["ip-address"], 4);
  const v6 = hostText(doc["v6-ip-address"], 6);
  return {
    ...(v4 ? { v4: doc.plen !== undefined ? `${v4}/${doc.plen}` : v4 } : {}),
    ...(v6 ? { v6 } : {}),
  };
}

/**
 * The agent's addresses the connection context does not have (normally none: the endpoint read the same
 * instance-ips). Without a prefix length (always for IPv6) only the address is compared.
 */
export function addressesNotInContext(doc: PortInfo, contextAddrs: readonly string[]): string[] {
  const cidrs = new Set(contextAddrs.map((a) => canonicalCidr(a)));
  const hosts = new Set(contextAddrs.map((a) => hostText(a.split("/")[0])));
  return Object.values(agentAddresses(doc)).filter((a) =>
    a.includes("/") ? !cidrs.has(canonicalCidr(a)) : !hosts.has(a),
  );
}

function hostText(text: string | undefined, family?: 4 | 6): string | undefined {
  const ip = text ? tryParseIp(text) : undefined;
  if (!ip || (family && ip.family !== family) || ip.value === 0n) return undefined;
  return formatIp(ip);
}

/** One entry of GET /vm-cfg/<key> (§1.4). */
export interface VmCfgItem {
  id: string;
  "vm-uuid"?: string;
  "instance-id"?: string;
  "vn-id": string;
  "vn-name": string;
  "mac-address": string;
  annotations?: string[];
}

export interface PollPolicy {
  /** Wait between polls (the CNI's poll-timeout, default 3 s). */
  intervalMs: number;
  /** Polls after the first one (the CNI's poll-retries, default 20). */
  retries: number;
}

export const cniPollPolicy: PollPolicy = { intervalMs: 3000, retries: 20 };

export class AgentError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface AgentClientOptions {
  /** Default http://127.0.0.1:9091. */
  url?: string;
  generation?: AgentGeneration;
  /** The agent's port directory for /vm ports (default /var/lib/contrail/ports/vm). */
  portDir?: string;
  timeoutMs?: number;
}

export class AgentClient {
  readonly url: string;
  readonly generation: AgentGeneration;
  readonly portDir: string;
  private readonly timeoutMs: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  constructor(opts: AgentClientOptions = {}) {
    this.url = (opts.url ?? "http://127.0.0.1:9091").replace(/\/$/, "");
    this.generation = opts.generation ?? "r2011";
    this.portDir = opts.portDir ?? "/var/lib/contrail/ports/vm";
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** The directory holding a VM's port files: `<dir>/<vm-name>` from R2011, `<dir>/<vm-uuid>` before. */
  vmDir(vmName: string, vmUuid: string): string {
    const key = this.generation === "r2011" ? vmName : vmUuid;
    // Names come from the endpoint's answer: never let one reach outside the port directory.
    if (!safeName(key))
      throw new AgentError(`"${key}" is not a VM name or uuid usable as a port directory`, 400);
    return join(this.portDir, key);
  }

  /** The `/vm-cfg` key of a VM. */
  vmCfgKey(vmName: string, vmUuid: string): string {
    return this.generation === "r2011" ? vmName : vmUuid.toLowerCase();
  }

  async getVmCfg(key: string): Promise<VmCfgItem[] | undefined> {
    const r = await this.call("GET", `/vm-cfg/${encodeURIComponent(key)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw this.failure(`GET /vm-cfg/${key}`, r);
    return r.body as VmCfgItem[];
  }

  async postVm(port: VmPort): Promise<void> {
    const r = await this.call("POST", "/vm", port);
    if (r.status !== 200 && r.status !== 201) throw this.failure("POST /vm", r);
  }

  /** The port documents of the VM, or undefined while the agent answers 404 (config not complete yet). */
  async getVm(vmUuid: string): Promise<PortInfo[] | undefined> {
    if (!uuidPattern.test(vmUuid)) throw new AgentError(`"${vmUuid}" is not a VM uuid`, 400);
    const r = await this.call("GET", `/vm/${vmUuid.toLowerCase()}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw this.failure(`GET /vm/${vmUuid}`, r);
    return r.body as PortInfo[];
  }

  async deleteVm(vmUuid: string): Promise<void> {
    if (!uuidPattern.test(vmUuid)) throw new AgentError(`"${vmUuid}" is not a VM uuid`, 400);
    const r = await this.call("DELETE", `/vm/${vmUuid.toLowerCase()}`);
    if (r.status !== 200) throw this.failure(`DELETE /vm/${vmUuid}`, r);
  }

  /** Polls `/vm-cfg/<key>` until it lists `count` interfaces (the CNI's step 2). */
  async pollVmCfg(key: string, policy: PollPolicy, signal?: AbortSignal): Promise<VmCfgItem[]> {
    return this.poll(`GET /vm-cfg/${key}`, policy, signal, async () => {
      const items = await this.getVmCfg(key);
      const n = Number(
        /^\{index:\d+\/(\d+)\}$/.exec(
          items?.[0]?.annotations?.find((a) => a.startsWith("{index:")) ?? "",
        )?.[1] ?? "1",
      );
      return items && items.length >= n ? items : undefined;
    });
  }

  /** Polls GET /vm/<uuid> until the agent has the port ready (the CNI's step 4). */
  pollVm(vmUuid: string, policy: PollPolicy, signal?: AbortSignal): Promise<PortInfo[]> {
    return this.poll(`GET /vm/${vmUuid}`, policy, signal, () => this.getVm(vmUuid));
  }

  /** Writes the port file the CNI writes before POST /vm (`<vm dir>/<vmi-uuid>`). */
  async writePortFile(port: VmPort): Promise<string> {
    const dir = this.vmDir(port["vm-name"], port["vm-uuid"]);
    await mkdir(dir, { recursive: true });
    const file = join(dir, port["vmi-uuid"]);
    await writeFile(file, JSON.stringify(port, null, 2));
    return file;
  }

  /** Removes the VM's port files (on new agents DELETE /vm does not remove them: the caller must, §1.2). */
  async removePortFiles(vmName: string, vmUuid: string): Promise<void> {
    await rm(this.vmDir(vmName, vmUuid), { recursive: true, force: true });
  }

  close(): void {
    this.agent.destroy();
  }

  private async poll<T>(
    what: string,
    policy: PollPolicy,
    signal: AbortSignal | undefined,
    once: () => Promise<T | undefined>,
  ): Promise<T> {
    let last = "no answer";
    let answered = false;
    for (let i = 0; i <= policy.retries; i++) {
      if (i > 0) await sleep(policy.intervalMs, signal);
      if (signal?.aborted) throw new AgentError(`${what}: cancelled`, -1);
      try {
        const r = await once();
        if (r !== undefined) return r;
        answered = true;
        last = "404 (not ready)";
      } catch (err) {
        // Like the CNI: any failure of one poll means wait and retry.
        if (err instanceof AgentError && err.status > 0) answered = true;
        last = (err as Error).message;
      }
    }
    throw new AgentError(
      `${what}: agent at ${this.url} not ready after ${policy.retries + 1} polls ${policy.intervalMs} ms apart (last: ${last})`,
      // Never answered at all: the agent is down (UNAVAILABLE), not slow.
      answered ? 404 : 0,
    );
  }

  private failure(what: string, r: { status: number; body: unknown; text: string }): AgentError {
    const e = (r.body as { error?: unknown } | undefined)?.error;
    return new AgentError(
      `vRouter agent ${what}: ${r.status} ${typeof e === "string" ? e : r.text.slice(0, 200)}`,
      r.status,
    );
  }

  private call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown; text: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return timedTfCall("agent", method, path, () => this.exchange(method, path, payload));
  }

  private exchange(
    method: string,
    path: string,
    payload: string | undefined,
  ): Promise<{ status: number; body: unknown; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${this.url}${path}`,
        {
          method,
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: payload
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
            : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, text });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)));
      req.on("error", (err) =>
        reject(new AgentError(`vRouter agent ${method} ${path} at ${this.url}: ${err.message}`, 0)),
      );
      req.end(payload);
    });
  }
}

export const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A file-name-safe VM name (TF's `<cluster>__<ns>__<pod>`, ours `nsm__<id>`) or uuid. */
export function safeName(s: string): boolean {
  return /^[A-Za-z0-9_.:-]{1,200}$/.test(s) && s !== "." && s !== "..";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
