// The emulated vRouter agent's port API (spec §1): the routes of §1.2 with the transport quirks of §1.1
// (whole-path regexes, lowercase UUIDs only, status text always "OK", `{"error":…}` bodies, 500 by default),
// port files persisted and reloaded like the agent's, `/vm-cfg` keyed by VM name (R2011+) or VM uuid (R2005),
// and a data plane (plumbing.ts) that does what the vRouter would. One agent per compute namespace.
import http from "node:http";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { VncClient, type VncAuth, type VncObject } from "../../forwarder/tf/vnc.js";
import { safeName, uuidPattern, type AgentGeneration } from "../../forwarder/tf/agent.js";
import { textOf } from "../../forwarder/tf/keys.js";
import { Dataplane } from "../../dataplane/index.js";
import { ComputePlumbing } from "./plumbing.js";
import { resolvePort, vnRouteTargets, vnVni, type ResolvedPort } from "./resolve.js";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

export interface AgentEmulatorOptions {
  /** The compute's hostname = its virtual-router's name. */
  hostname: string;
  configUrl: string;
  configAuth?: VncAuth;
  /** Other clusters' config APIs: VNs sharing a route target are stretched to their computes. */
  peerConfigUrls?: string[];
  host?: string;
  port?: number;
  /** The agent's port directory (default /var/lib/contrail/ports); /vm ports live under <dir>/vm. */
  portsRoot?: string;
  generation?: AgentGeneration;
  /** How often the agent re-reads config for its ports (FIPs, peers, late taps). Default 1000 ms. */
  syncIntervalMs?: number;
  log: Logger;
}

/** Fault injection for tests: the emulator's own knob, not part of the TF API. */
export interface AgentFaults {
  /** GET /vm answers 404 for the first N polls of each VM. */
  slowPolls?: number;
  /** The next N POST /vm fail with `failStatus` (default 500). */
  failPosts?: number;
  failStatus?: number;
}

interface Subscription {
  body: Record<string, string>;
  resolved?: ResolvedPort;
}

export interface RunningAgentEmulator {
  url: string;
  /** VM uuid → VMI uuids subscribed. */
  subscriptions(): Map<string, string[]>;
  stop(opts?: { keepDataPlane?: boolean }): Promise<void>;
}

export async function startAgentEmulator(opts: AgentEmulatorOptions): Promise<RunningAgentEmulator> {
  const log = opts.log;
  const generation = opts.generation ?? "r2011";
  const root = opts.portsRoot ?? "/var/lib/contrail/ports";
  const vmDir = join(root, "vm");
  const vnc = new VncClient({ url: opts.configUrl, auth: opts.configAuth ?? { kind: "none" } });
  const peers = (opts.peerConfigUrls ?? []).map(
    (url) => new VncClient({ url, auth: opts.configAuth ?? { kind: "none" } }),
  );
  const dp = new Dataplane();
  const ns = dp.netns();
  const self = await vnc
    .readByFqName("virtual-router", ["default-global-system-config", opts.hostname])
    .catch((err: unknown) => {
      throw new Error(
        `virtual-router default-global-system-config:${opts.hostname} not found in the config API at ${opts.configUrl}: ${(err as Error).message}`,
      );
    });
  const vtepIp = textOf(self["virtual_router_ip_address"]);
  const plumbing = new ComputePlumbing({ ns, vtepIp, log });
  plumbing.init();

  /** VM uuid → VMI uuid → subscription. */
  const vms = new Map<string, Map<string, Subscription>>();
  const ports = new Map<string, Subscription>();
  const polls = new Map<string, number>();
  const faults: AgentFaults = {};

  // The agent reloads its port files at start-up (§1.1).
  for (const sub of safeList(vmDir)) {
    for (const f of safeList(join(vmDir, sub))) {
      try {
        const body = JSON.parse(readFileSync(join(vmDir, sub, f), "utf8")) as Record<string, string>;
        if (body["vm-uuid"] && body["vmi-uuid"]) subscribe(body);
      } catch {
        // not a port file
      }
    }
  }

  function subscribe(body: Record<string, string>): void {
    const vm = body["vm-uuid"]!.toLowerCase();
    let m = vms.get(vm);
    if (!m) {
      m = new Map<string, Subscription>();
      vms.set(vm, m);
    }
    const vmi = body["vmi-uuid"]!.toLowerCase();
    // A re-POST updates what the port is (e.g. a new host interface); its config stays.
    m.set(vmi, { body, ...(m.get(vmi)?.resolved ? { resolved: m.get(vmi)!.resolved } : {}) });
  }

  let modeCache: { at: number; mode: string } | undefined;
  /** The global VNI mode (automatic: VNI = VN id; configured: the VN's vxlan_network_identifier). */
  async function vniMode(): Promise<string> {
    if (modeCache && Date.now() - modeCache.at < 1000) return modeCache.mode;
    const g = await vnc
      .readByFqName("global-vrouter-config", [
        "default-global-system-config",
        "default-global-vrouter-config",
      ])
      .catch(() => undefined);
    modeCache = { at: Date.now(), mode: textOf(g?.["vxlan_network_identifier_mode"]) || "automatic" };
    return modeCache.mode;
  }

  /** Resolves every VMI of the VM; undefined (→ 404) unless all are complete. */
  async function resolveVm(vm: string): Promise<ResolvedPort[] | undefined> {
    const m = vms.get(vm);
    if (!m || m.size === 0) return undefined;
    const mode = await vniMode();
    const out: ResolvedPort[] = [];
    for (const [vmi, sub] of m) {
      const r = await resolvePort(vnc, vm, vmi, mode);
      if ("missing" in r) {
        log.debug({ vm, vmi, missing: r.missing }, "port config incomplete");
        return undefined;
      }
      sub.resolved = r;
      out.push(r);
    }
    return out;
  }

  const vtepCache = new Map<number, { at: number; ips: string[] }>();
  /** VTEPs of the VN: this cluster's computes, plus peer clusters' computes if one of their VNs shares a RT. */
  async function vteps(vni: number, rts: string[]): Promise<string[]> {
    const hit = vtepCache.get(vni);
    if (hit && Date.now() - hit.at < (opts.syncIntervalMs ?? 1000)) return hit.ips;
    const ips = new Set<string>();
    const addRouters = (vrs: VncObject[]): void => {
      for (const vr of vrs) {
        const ip = vr["virtual_router_ip_address"];
        if (typeof ip === "string" && ip) ips.add(ip);
      }
    };
    addRouters(await vnc.list("virtual-router", { detail: true }));
    for (const peer of peers) {
      try {
        const vns = await peer.list("virtual-network", { detail: true });
        const shared = vns.find((v) => vnRouteTargets(v).some((rt) => rts.includes(rt)));
        if (!shared) continue;
        const peerMode = textOf(
          (
            await peer
              .readByFqName("global-vrouter-config", [
                "default-global-system-config",
                "default-global-vrouter-config",
              ])
              .catch(() => undefined)
          )?.["vxlan_network_identifier_mode"],
        );
        if (vnVni(shared, peerMode) !== vni) {
          log.warn(
            { vni, peerVni: vnVni(shared, peerMode) },
            "stretched VN has a different VNI in the peer cluster: use vxlan_network_identifier_mode configured and the same vxlan_network_identifier on both",
          );
          continue;
        }
        addRouters(await peer.list("virtual-router", { detail: true }));
      } catch (err) {
        log.warn({ err: (err as Error).message }, "peer cluster's config API unreachable");
      }
    }
    const list = [...ips];
    vtepCache.set(vni, { at: Date.now(), ips: list });
    return list;
  }

  /** The last good view of every subscribed port: a config API outage keeps the data plane as it was. */
  async function currentPorts(full: boolean): Promise<ResolvedPort[]> {
    const out: ResolvedPort[] = [];
    const mode = await vniMode();
    for (const [vm, m] of vms) {
      for (const [vmi, sub] of m) {
        if (!full && sub.resolved) {
          out.push(sub.resolved);
          continue;
        }
        try {
          const r = await resolvePort(vnc, vm, vmi, mode);
          if (!("missing" in r)) sub.resolved = r;
        } catch {
          // unreachable: keep what we had, as a real agent keeps forwarding headless
        }
        if (sub.resolved) out.push(sub.resolved);
      }
    }
    for (const sub of ports.values()) if (sub.resolved) out.push(sub.resolved);
    return out;
  }

  let syncing: Promise<void> | undefined;
  let again: Promise<void> | undefined;
  let againFull = false;
  let stopped = false;
  /**
   * Makes the data plane match the subscriptions: VN plumbing, taps, NAT; removes unused VNs. Calls while
   * one runs share a single follow-up run.
   */
  function sync(full = false): Promise<void> {
    if (stopped) return Promise.resolve();
    if (syncing) {
      againFull ||= full;
      again ??= syncing.then(() => {
        const f = againFull;
        again = undefined;
        againFull = false;
        return sync(f);
      });
      return again;
    }
    syncing = (async () => {
      // A full sync re-reads every port's config (floating IPs come and go); the others reuse what is known.
      const resolved = await currentPorts(full);
      if (stopped) return;
      const byVni = new Map<number, ResolvedPort[]>();
      for (const p of resolved) byVni.set(p.vni, [...(byVni.get(p.vni) ?? []), p]);
      for (const [vni, ps] of byVni) {
        const gws = [...new Set(ps.filter((p) => p.gateway).map((p) => `${p.gateway}/${p.plen}`))];
        await plumbing.ensureVn(vni, gws, await vteps(vni, ps[0]!.routeTargets));
        for (const vm of vms.values())
          for (const sub of vm.values())
            if (sub.resolved?.vni === vni) await plumbing.attach(sub.body["host-ifname"] ?? "", vni);
      }
      for (const vni of plumbing.activeVnis) if (!byVni.has(vni)) await plumbing.removeVn(vni);
      await plumbing.syncNat(resolved);
    })().finally(() => {
      syncing = undefined;
    });
    return syncing;
  }

  const timer = setInterval(() => {
    sync(true).catch((err: unknown) => log.warn({ err: (err as Error).message }, "agent sync failed"));
  }, opts.syncIntervalMs ?? 1000);
  timer.unref();

  function portDoc(p: ResolvedPort, hostIf: string): Record<string, unknown> {
    return {
      id: p.vmiUuid,
      "instance-id": p.vmUuid,
      "vn-id": p.vnUuid,
      "vm-project-id": p.projectUuid,
      "mac-address": p.mac,
      "system-name": hostIf,
      "rx-vlan-id": 65535,
      "tx-vlan-id": 65535,
      "vhostuser-mode": 0,
      "ip-address": p.ip,
      plen: p.plen,
      "dns-server": p.dns,
      gateway: p.gateway,
      author: "nsm tf-emulator agent",
      time: new Date().toISOString(),
    };
  }

  async function vmCfg(key: string): Promise<unknown[] | undefined> {
    // The VM by its key, then whether this compute's virtual-router refers to it (the control node pushes a
    // VM's config only to the compute whose VR refers to it).
    const vm =
      generation === "r2011"
        ? await vnc.readByFqName("virtual-machine", [key]).catch(() => undefined)
        : uuidPattern.test(key)
          ? await vnc.tryRead("virtual-machine", key)
          : undefined;
    if (!vm) return undefined;
    const routers = (vm["virtual_router_back_refs"] as { uuid: string }[] | undefined) ?? [];
    if (!routers.some((r) => r.uuid === self.uuid)) return undefined;
    const out: unknown[] = [];
    for (const b of (vm["virtual_machine_interface_back_refs"] as { uuid: string }[] | undefined) ?? []) {
      const vmi = await vnc.tryRead("virtual-machine-interface", b.uuid);
      if (!vmi) continue;
      const vnRef = (vmi["virtual_network_refs"] as { uuid: string; to: string[] }[] | undefined)?.[0];
      const kv =
        (vmi["annotations"] as { key_value_pair?: { key: string; value: string }[] } | undefined)
          ?.key_value_pair ?? [];
      out.push({
        id: vmi.uuid,
        [generation === "r2011" ? "vm-uuid" : "instance-id"]: vm.uuid,
        "vn-id": vnRef?.uuid ?? "",
        "vn-name": vnRef?.to?.join(":") ?? "",
        "mac-address":
          (vmi["virtual_machine_interface_mac_addresses"] as { mac_address?: string[] } | undefined)
            ?.mac_address?.[0] ?? "",
        "sub-interface": false,
        "vlan-id": -1,
        ...(kv.length > 0 ? { annotations: kv.map((p) => `{${p.key}:${p.value}}`) } : {}),
      });
    }
    return out;
  }

  function persist(body: Record<string, string>): void {
    const key = generation === "r2011" ? body["vm-name"]! : body["vm-uuid"]!;
    const dir = join(vmDir, key);
    const file = join(dir, body["vmi-uuid"]!);
    // The agent never overwrites an existing file (the CNI may have written it first).
    if (existsSync(file)) return;
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      file,
      JSON.stringify({ ...body, author: "nsm tf-emulator agent", time: new Date().toISOString() }),
    );
  }

  type Reply = [number, unknown];
  const notFound: Reply = [404, { error: "{ Not Found }" }];

  async function route(method: string, path: string, body: unknown): Promise<Reply> {
    let m: RegExpExecArray | null;
    if (path === "/vm" && method === "POST") {
      if (faults.failPosts && faults.failPosts > 0) {
        faults.failPosts--;
        return [faults.failStatus ?? 500, { error: "{ Emulated failure }" }];
      }
      if (typeof body !== "object" || body === null || Array.isArray(body))
        return [500, { error: "{ Invalid JSON }" }];
      const b = body as Record<string, unknown>;
      for (const k of ["vm-uuid", "host-ifname", "vm-name", "vn-uuid", "vmi-uuid"]) {
        if (typeof b[k] !== "string" || !b[k])
          return [500, { error: `{ Invalid or missing data for ${textOf(b["vm-uuid"])} }` }];
      }
      const sb = Object.fromEntries(Object.entries(b).map(([k, v]) => [k, textOf(v)]));
      if (
        !uuidPattern.test(sb["vm-uuid"]!) ||
        !uuidPattern.test(sb["vmi-uuid"]!) ||
        !safeName(sb["vm-name"]!)
      ) {
        return [500, { error: `{ Invalid or missing data for ${sb["vm-uuid"]!} }` }];
      }
      subscribe(sb);
      persist(sb);
      void sync().catch(() => undefined);
      return [200, {}];
    }
    if ((m = new RegExp(`^/vm/(${UUID})$`).exec(path))) {
      const vm = m[1]!;
      if (method === "DELETE") {
        vms.delete(vm);
        polls.delete(vm);
        // Only vm/<vm-uuid>/ goes: on R2011+ agents the CNI deletes its vm/<vm-name>/ files itself (§1.2).
        rmSync(join(vmDir, vm), { recursive: true, force: true });
        void sync().catch(() => undefined);
        return [200, {}];
      }
      if (method !== "GET") return [404, { error: "Unknown Request" }];
      const n = (polls.get(vm) ?? 0) + 1;
      polls.set(vm, n);
      if (faults.slowPolls && n <= faults.slowPolls) return notFound;
      const resolved = await resolveVm(vm);
      if (!resolved) return notFound;
      // This port's own plumbing now; the rest (other ports, peers) waits for the next sync.
      await sync(false);
      const m2 = vms.get(vm)!;
      return [200, resolved.map((p) => portDoc(p, m2.get(p.vmiUuid)?.body["host-ifname"] ?? ""))];
    }
    if ((m = new RegExp(`^/vm/(${UUID})/(${UUID})$`).exec(path)) && method === "GET") {
      const resolved = await resolveVm(m[1]!);
      const p = resolved?.find((x) => x.vmiUuid === m![2]);
      if (!p) return notFound;
      return [200, [portDoc(p, vms.get(m[1]!)?.get(p.vmiUuid)?.body["host-ifname"] ?? "")]];
    }
    if ((m = /^\/vm-cfg\/(.+)$/.exec(path)) && method === "GET") {
      const items = await vmCfg(decodeURIComponent(m[1]!));
      return items ? [200, items] : notFound;
    }
    if (path === "/port" && method === "POST") {
      const list = Array.isArray(body) ? body : [body];
      const checked: Record<string, string>[] = [];
      for (const p of list) {
        const problem = portProblem(p);
        if (problem) return [500, { error: problem }];
        checked.push(Object.fromEntries(Object.entries(p as object).map(([k, v]) => [k, String(v)])));
      }
      for (const p of checked) {
        ports.set(p["id"]!.toLowerCase(), { body: p });
        const file = join(root, p["id"]!.toLowerCase());
        mkdirSync(root, { recursive: true });
        if (!existsSync(file)) writeFileSync(file, JSON.stringify(p));
      }
      return [200, {}];
    }
    if ((m = new RegExp(`^/port/(${UUID})$`).exec(path))) {
      const id = m[1]!;
      if (method === "DELETE") {
        ports.delete(id);
        rmSync(join(root, id), { force: true });
        void sync().catch(() => undefined);
        return [200, {}];
      }
      if (method !== "GET") return [404, { error: "Unknown Request" }];
      const sub = ports.get(id);
      if (!sub) return notFound;
      const r = await resolvePort(vnc, sub.body["instance-id"] ?? "", id, await vniMode());
      if ("missing" in r) return notFound;
      sub.resolved = r;
      return [200, portDoc(r, sub.body["system-name"] ?? "")];
    }
    if ((m = new RegExp(`^/(enable|disable)-port/(${UUID})$`).exec(path)) && method === "PUT") {
      const sub = ports.get(m[2]!);
      if (!sub) return [500, { error: `{Port Not found ${m[2]!}}` }];
      if (sub.body["type"] !== "2") return [500, { error: `{Incorrect Port type for ${m[2]!}}` }];
      return [200, {}];
    }
    if (path === "/syncports" && method === "POST") return [200, {}];
    if (path === "/gateway" && (method === "POST" || method === "DELETE")) {
      if (!Array.isArray(body)) return [500, { error: "{ Invalid JSON }" }];
      return [200, {}];
    }
    if (path === "/emulator/faults" && method === "PUT") {
      Object.assign(faults, body as AgentFaults);
      return [200, {}];
    }
    return [404, { error: "Unknown Request" }];
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      let bad = false;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        bad = true;
      }
      const path = (req.url ?? "/").split("?")[0]!;
      const done = ([status, doc]: Reply): void => {
        res.writeHead(status, "OK", { "Content-Type": "application/json; charset=UTF-8" });
        res.end(JSON.stringify(doc));
        log.debug({ method: req.method, path, status }, "agent request");
      };
      if (bad && req.method !== "GET") return done([500, { error: "{ Invalid JSON }" }]);
      route(req.method ?? "GET", path, body).then(done, (err: unknown) =>
        done([500, { error: `{ ${(err as Error).message} }` }]),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 9091, opts.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address() as { port: number };
  const url = `http://${opts.host ?? "127.0.0.1"}:${addr.port}`;
  await sync(true).catch((err: unknown) => log.warn({ err: (err as Error).message }, "initial sync failed"));
  log.info(
    { urls: [url], hostname: opts.hostname, vtepIp, generation, portsRoot: root },
    "vRouter agent emulator ready",
  );

  return {
    url,
    subscriptions: () => new Map([...vms].map(([vm, m]) => [vm, [...m.keys()]])),
    async stop(o = {}) {
      stopped = true;
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await syncing?.catch(() => undefined);
      if (!o.keepDataPlane) await plumbing.cleanup();
      vnc.close();
      peers.forEach((p) => p.close());
      dp.close();
    },
  };
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function portProblem(p: unknown): string | undefined {
  if (typeof p !== "object" || p === null) return "{ Invalid JSON }";
  const o = p as Record<string, unknown>;
  for (const k of [
    "id",
    "instance-id",
    "vn-id",
    "vm-project-id",
    "display-name",
    "ip-address",
    "ip6-address",
    "system-name",
    "mac-address",
  ]) {
    if (typeof o[k] !== "string") return `{ Invalid or missing data for ${textOf(o["id"])}: ${k} }`;
  }
  for (const k of ["type", "rx-vlan-id", "tx-vlan-id"]) {
    if (typeof o[k] !== "number") return `{ Invalid or missing data for ${String(o["id"])}: ${k} }`;
  }
  const mac = o["mac-address"] as string;
  if (mac.split(":").length !== 6 || /^[0:]+$/.test(mac)) return "Invalid MAC, Use xx:xx:xx:xx:xx:xx format";
  if (o["type"] === 0 && !o["vn-id"]) return `{ Invalid or missing data for ${String(o["id"])}: vn-id }`;
  return undefined;
}
