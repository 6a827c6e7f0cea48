// The emulated vRouter agent's port API (spec §1): the route table of TF's RestServer (routes.ts) with the
// transport quirks of §1.1 (status text always "OK", `{"error":…}` bodies), port subscriptions and their
// files (ports.ts), the documents it answers with (docs.ts), and a data plane (plumbing.ts) kept in step
// with the subscribed ports. One agent per compute namespace.
import http from "node:http";
import type { Logger } from "pino";
import { VncClient, type VncAuth, type VncObject } from "../../forwarder/tf/vnc.js";
import { uuidPattern, type AgentGeneration } from "../../forwarder/tf/agent.js";
import { textOf } from "../../forwarder/tf/keys.js";
import { Dataplane } from "../../dataplane/index.js";
import { portDoc, vmCfgItem } from "./docs.js";
import { ComputePlumbing } from "./plumbing.js";
import { parseBody, portBody, PortError, PortTable, vmPortBody, type Subscription } from "./ports.js";
import { resolvePort, vnRouteTargets, vnVni, type ResolvedPort } from "./resolve.js";
import { hostedSnat, snatSteering, type HostedSnat, type SnatPort } from "./snat.js";
import { SnatInstances } from "./snatns.js";
import {
  dispatch,
  fail,
  notFound,
  ok,
  route,
  UUID,
  type AgentRequest,
  type Reply,
  type Route,
} from "./routes.js";

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
  /** After a `/syncports`, ports not posted again within this time are dropped (TF's stale cleaner). */
  staleCleanupMs?: number;
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

export interface RunningAgentEmulator {
  url: string;
  /** VM uuid → VMI uuids subscribed. */
  subscriptions(): Map<string, string[]>;
  stop(opts?: { keepDataPlane?: boolean }): Promise<void>;
}

/** A TF refusal as the agent words it: `{ <text> }`. */
const refused = (err: unknown): Reply => {
  if (err instanceof PortError) return fail(`{ ${err.message} }`);
  throw err;
};

class AgentEmulator {
  readonly table: PortTable;
  private readonly vnc: VncClient;
  private readonly peers: VncClient[];
  private readonly dp = new Dataplane();
  private plumbing!: ComputePlumbing;
  private snat!: SnatInstances;
  /** The SNAT instances scheduled here, as the last full sync read them. */
  private hosted: HostedSnat[] = [];
  private self!: VncObject;
  private readonly polls = new Map<string, number>();
  private readonly faults: AgentFaults = {};
  private readonly vtepCache = new Map<number, { at: number; ips: string[] }>();
  private readonly snatCache = new Map<string, { at: number; port: SnatPort | undefined }>();
  private modeCache: { at: number; mode: string } | undefined;
  private syncing: Promise<void> | undefined;
  private again: Promise<void> | undefined;
  private againFull = false;
  private stopped = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  readonly routes: readonly Route[] = [
    route("POST", "/port", (r) => this.postPort(r)),
    route("POST", "/syncports", () => this.syncPorts()),
    route("DELETE", `/port/(${UUID})`, (r) => this.deletePort(r)),
    route("GET", `/port/(${UUID})`, (r) => this.getPort(r)),
    route("POST", "/gateway", (r) => this.gateway(r)),
    route("DELETE", "/gateway", (r) => this.gateway(r)),
    route("POST", "/vm", (r) => this.postVm(r)),
    route("DELETE", `/vm/(${UUID})`, (r) => this.deleteVm(r)),
    route("GET", `/vm/(${UUID})`, (r) => this.getVm(r)),
    route("GET", `/vm/(${UUID})/(${UUID})`, (r) => this.getVm(r)),
    route("GET", "/vm-cfg/(.*)", (r) => this.getVmCfg(r)),
    route("PUT", `/enable-port/(${UUID})`, (r) => this.linkState(r, true)),
    route("PUT", `/disable-port/(${UUID})`, (r) => this.linkState(r, false)),
    route("PUT", "/emulator/faults", (r) => this.putFaults(r)),
  ];

  constructor(private readonly opts: AgentEmulatorOptions) {
    const auth = opts.configAuth ?? { kind: "none" };
    this.vnc = new VncClient({ url: opts.configUrl, auth });
    this.peers = (opts.peerConfigUrls ?? []).map((url) => new VncClient({ url, auth }));
    this.table = new PortTable(opts.portsRoot ?? "/var/lib/contrail/ports", this.generation);
  }

  get generation(): AgentGeneration {
    return this.opts.generation ?? "r2011";
  }

  async start(): Promise<string> {
    const { opts } = this;
    this.self = await this.vnc
      .readByFqName("virtual-router", ["default-global-system-config", opts.hostname])
      .catch((err: unknown) => {
        throw new Error(
          `virtual-router default-global-system-config:${opts.hostname} not found in the config API at ${opts.configUrl}: ${(err as Error).message}`,
        );
      });
    const vtepIp = textOf(this.self["virtual_router_ip_address"]);
    this.plumbing = new ComputePlumbing({ dp: this.dp, ns: this.dp.netns(), vtepIp, log: opts.log });
    await this.plumbing.init();
    this.snat = new SnatInstances({
      dp: this.dp,
      ns: this.dp.netns(),
      plumbing: this.plumbing,
      log: opts.log,
    });
    // The agent reloads its port files at start-up (§1.1).
    this.table.reload();
    const timer = setInterval(() => {
      this.sync(true).catch((err: unknown) =>
        opts.log.warn({ err: (err as Error).message }, "agent sync failed"),
      );
    }, opts.syncIntervalMs ?? 1000);
    timer.unref();
    this.timers.add(timer);
    return vtepIp;
  }

  async stop(keepDataPlane: boolean): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.syncing?.catch(() => undefined);
    if (!keepDataPlane) {
      await this.snat.cleanup();
      await this.plumbing.cleanup();
    }
    this.vnc.close();
    this.peers.forEach((p) => p.close());
    this.dp.close();
  }

  // ---------------------------------------------------------------- handlers

  private postVm({ body }: AgentRequest): Reply {
    const { faults } = this;
    if (faults.failPosts && faults.failPosts > 0) {
      faults.failPosts--;
      return fail("{ Emulated failure }", faults.failStatus ?? 500);
    }
    try {
      const d = parseBody(body, false);
      this.table.addVmPort(vmPortBody(d as Record<string, unknown>), true);
    } catch (err) {
      return refused(err);
    }
    void this.sync().catch(() => undefined);
    return ok;
  }

  private deleteVm({ params: [vm] }: AgentRequest): Reply {
    this.table.deleteVm(vm!);
    this.polls.delete(vm!);
    void this.sync().catch(() => undefined);
    return ok;
  }

  private async getVm({ params: [vm, vmi] }: AgentRequest): Promise<Reply> {
    const n = (this.polls.get(vm!) ?? 0) + 1;
    this.polls.set(vm!, n);
    if (this.faults.slowPolls && n <= this.faults.slowPolls) return notFound;
    const resolved = await this.resolveVm(vm!);
    const ports = resolved?.filter((p) => vmi === undefined || p.vmiUuid === vmi);
    if (!ports || ports.length === 0) return notFound;
    // This port's own plumbing now; the rest (other ports, peers) waits for the next sync.
    await this.sync(false);
    const subs = this.table.vms.get(vm!);
    return [200, ports.map((p) => portDoc(p, subs?.get(p.vmiUuid)?.body["host-ifname"] ?? ""))];
  }

  private async getVmCfg({ params: [raw] }: AgentRequest): Promise<Reply> {
    const items = await this.vmCfg(decodeURIComponent(raw!));
    return items ? [200, items] : notFound;
  }

  private postPort({ body }: AgentRequest): Reply {
    let d: ReturnType<typeof parseBody>;
    try {
      d = parseBody(body, true);
      if (!Array.isArray(d)) this.table.addPort(portBody(d), true);
    } catch (err) {
      return refused(err);
    }
    if (Array.isArray(d)) {
      let checked: Record<string, string>[];
      try {
        checked = d.map((e) => portBody(e));
      } catch {
        // All or none, and — as on a real agent — 200 even when an element is refused and none is added.
        return ok;
      }
      for (const b of checked) this.table.addPort(b, true);
    }
    void this.sync().catch(() => undefined);
    return ok;
  }

  private deletePort({ params: [id] }: AgentRequest): Reply {
    this.table.deletePort(id!);
    void this.sync().catch(() => undefined);
    return ok;
  }

  private async getPort({ params: [id] }: AgentRequest): Promise<Reply> {
    const sub = this.table.ports.get(id!);
    if (!sub) return notFound;
    const r = await resolvePort(
      this.vnc,
      sub.body["instance-id"] ?? "",
      id!,
      await this.vniMode(),
      this.snatOf,
    );
    if ("missing" in r) return notFound;
    sub.resolved = r;
    return [200, portDoc(r, sub.body["system-name"] ?? "")];
  }

  private linkState({ params: [id] }: AgentRequest, up: boolean): Reply {
    try {
      this.table.setLinkState(id!, up);
      return ok;
    } catch (err) {
      // Enable/disable wrap their texts without spaces (`{Port Not found …}`).
      if (err instanceof PortError) return fail(`{${err.message}}`);
      throw err;
    }
  }

  /** A new sync version; ports not posted again before the stale timeout go (`SyncHandler`). */
  private syncPorts(): Reply {
    const version = ++this.table.version;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const gone = this.table.dropStale(version);
      if (gone.length > 0) {
        this.opts.log.info({ ports: gone }, "stale ports removed after /syncports");
        void this.sync().catch(() => undefined);
      }
    }, this.opts.staleCleanupMs ?? 60_000);
    timer.unref();
    this.timers.add(timer);
    return ok;
  }

  /** Virtual gateways (vgw) are validated, not emulated. */
  private gateway({ body }: AgentRequest): Reply {
    const d = tryParse(body);
    if (d === undefined) return fail(`{ Invalid Json string ==> ${body} }`);
    if (!Array.isArray(d)) return fail(`{ Unexpected Json string (not an array) ==> ${body} }`);
    return ok;
  }

  private putFaults({ body }: AgentRequest): Reply {
    Object.assign(this.faults, tryParse(body) as AgentFaults);
    return ok;
  }

  // ---------------------------------------------------------------- config

  /**
   * Where a VN's traffic for the outside goes (its router's SNAT instance), read at most once per sync
   * interval per VN: every poll of every port resolves it, and it takes several config reads.
   */
  private readonly snatOf = async (vn: VncObject): Promise<SnatPort | undefined> => {
    const hit = this.snatCache.get(vn.uuid);
    if (hit && Date.now() - hit.at < (this.opts.syncIntervalMs ?? 1000)) return hit.port;
    const port = await snatSteering(this.vnc, vn);
    this.snatCache.set(vn.uuid, { at: Date.now(), port });
    return port;
  };

  /** The global VNI mode (automatic: VNI = VN id; configured: the VN's vxlan_network_identifier). */
  private async vniMode(): Promise<string> {
    if (this.modeCache && Date.now() - this.modeCache.at < 1000) return this.modeCache.mode;
    const g = await this.vnc
      .readByFqName("global-vrouter-config", [
        "default-global-system-config",
        "default-global-vrouter-config",
      ])
      .catch(() => undefined);
    this.modeCache = { at: Date.now(), mode: textOf(g?.["vxlan_network_identifier_mode"]) || "automatic" };
    return this.modeCache.mode;
  }

  /** Resolves every VMI of the VM; undefined (→ 404) unless all are complete. */
  private async resolveVm(vm: string): Promise<ResolvedPort[] | undefined> {
    const m = this.table.vms.get(vm);
    if (!m || m.size === 0) return undefined;
    const mode = await this.vniMode();
    const out: ResolvedPort[] = [];
    for (const [vmi, sub] of m) {
      const r = await resolvePort(this.vnc, vm, vmi, mode, this.snatOf);
      if ("missing" in r) {
        this.opts.log.debug({ vm, vmi, missing: r.missing }, "port config incomplete");
        return undefined;
      }
      sub.resolved = r;
      out.push(r);
    }
    return out;
  }

  private async vmCfg(key: string): Promise<unknown[] | undefined> {
    const { vnc } = this;
    // The VM by its key, then whether this compute's virtual-router refers to it (the control node pushes a
    // VM's config only to the compute whose VR refers to it).
    const vm =
      this.generation === "r2011"
        ? await vnc.readByFqName("virtual-machine", [key]).catch(() => undefined)
        : uuidPattern.test(key)
          ? await vnc.tryRead("virtual-machine", key)
          : undefined;
    if (!vm) return undefined;
    const routers = (vm["virtual_router_back_refs"] as { uuid: string }[] | undefined) ?? [];
    if (!routers.some((r) => r.uuid === this.self.uuid)) return undefined;
    const vmKey = this.generation === "r2011" ? "vm-uuid" : "instance-id";
    const out: unknown[] = [];
    for (const b of (vm["virtual_machine_interface_back_refs"] as { uuid: string }[] | undefined) ?? []) {
      const vmi = await vnc.tryRead("virtual-machine-interface", b.uuid);
      if (vmi) out.push(vmCfgItem(vmi, vm.uuid, vmKey));
    }
    return out;
  }

  /** VTEPs of the VN: this cluster's computes, plus peer clusters' computes if one of their VNs shares a RT. */
  private async vteps(vni: number, rts: string[]): Promise<string[]> {
    const hit = this.vtepCache.get(vni);
    if (hit && Date.now() - hit.at < (this.opts.syncIntervalMs ?? 1000)) return hit.ips;
    const ips = new Set<string>();
    const addRouters = (vrs: VncObject[]): void => {
      for (const vr of vrs) {
        const ip = vr["virtual_router_ip_address"];
        if (typeof ip === "string" && ip) ips.add(ip);
      }
    };
    addRouters(await this.vnc.list("virtual-router", { detail: true }));
    for (const peer of this.peers) {
      try {
        if (await this.peerSharesVn(peer, vni, rts))
          addRouters(await peer.list("virtual-router", { detail: true }));
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, "peer cluster's config API unreachable");
      }
    }
    const list = [...ips];
    this.vtepCache.set(vni, { at: Date.now(), ips: list });
    return list;
  }

  private async peerSharesVn(peer: VncClient, vni: number, rts: string[]): Promise<boolean> {
    if (rts.length === 0) return false;
    const vns = await peer.list("virtual-network", { detail: true });
    const shared = vns.find((v) => vnRouteTargets(v).some((rt) => rts.includes(rt)));
    if (!shared) return false;
    const g = await peer
      .readByFqName("global-vrouter-config", [
        "default-global-system-config",
        "default-global-vrouter-config",
      ])
      .catch(() => undefined);
    const peerVni = vnVni(shared, textOf(g?.["vxlan_network_identifier_mode"]));
    if (peerVni === vni) return true;
    this.opts.log.warn(
      { vni, peerVni },
      "stretched VN has a different VNI in the peer cluster: use vxlan_network_identifier_mode configured and the same vxlan_network_identifier on both",
    );
    return false;
  }

  // ---------------------------------------------------------------- data plane

  /** Every subscribed port (`/vm` and `/port`) with its host interface; the last good view of each. */
  private async currentPorts(full: boolean): Promise<{ port: ResolvedPort; hostIf: string }[]> {
    const out: { port: ResolvedPort; hostIf: string }[] = [];
    const mode = await this.vniMode();
    const visit = async (vm: string, vmi: string, sub: Subscription, hostIf: string): Promise<void> => {
      if (full || !sub.resolved) {
        try {
          const r = await resolvePort(this.vnc, vm, vmi, mode, this.snatOf);
          if (!("missing" in r)) sub.resolved = r;
        } catch {
          // unreachable: keep what we had, as a real agent keeps forwarding headless
        }
      }
      if (sub.resolved) out.push({ port: sub.resolved, hostIf });
    };
    for (const [vm, m] of this.table.vms)
      for (const [vmi, sub] of m) await visit(vm, vmi, sub, sub.body["host-ifname"] ?? "");
    for (const [id, sub] of this.table.ports)
      await visit(sub.body["instance-id"] ?? "", id, sub, sub.body["system-name"] ?? "");
    return out;
  }

  /**
   * Makes the data plane match the subscriptions: VN plumbing, taps, NAT; removes unused VNs. Calls while
   * one runs share a single follow-up run.
   */
  sync(full = false): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.syncing) {
      this.againFull ||= full;
      this.again ??= this.syncing.then(() => {
        const f = this.againFull;
        this.again = undefined;
        this.againFull = false;
        return this.sync(f);
      });
      return this.again;
    }
    this.syncing = this.syncOnce(full).finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncOnce(full: boolean): Promise<void> {
    // A full sync re-reads every port's config (floating IPs come and go) and the SNAT instances scheduled
    // here; the others reuse what is known.
    const current = await this.currentPorts(full);
    if (full) {
      const mode = await this.vniMode();
      this.hosted = await hostedSnat(this.vnc, this.self.uuid, (vn) => vnVni(vn, mode)).catch(
        (err: unknown) => {
          this.opts.log.warn(
            { err: (err as Error).message },
            "SNAT instances not read; keeping the last view",
          );
          return this.hosted;
        },
      );
    }
    if (this.stopped) return;
    const byVni = new Map<number, { port: ResolvedPort; hostIf: string }[]>();
    for (const c of current) byVni.set(c.port.vni, [...(byVni.get(c.port.vni) ?? []), c]);
    // A SNAT instance's internal VNs are plumbed here even without a port of them (TF makes their VRFs).
    const vnis = new Set([...byVni.keys(), ...this.hosted.flatMap((h) => h.internal.map((i) => i.vni))]);
    for (const vni of vnis) {
      const ps = byVni.get(vni) ?? [];
      const gws = new Set(
        ps.flatMap((c) => c.port.addrs.filter((a) => a.gateway).map((a) => `${a.gateway}/${a.plen}`)),
      );
      await this.plumbing.ensureVn(vni, [...gws], await this.vteps(vni, ps[0]?.port.routeTargets ?? []));
      for (const c of ps) await this.plumbing.attach(c.hostIf, vni);
    }
    const routedIn = await this.snat.sync(this.hosted);
    for (const vni of this.plumbing.activeVnis) if (!vnis.has(vni)) await this.plumbing.removeVn(vni);
    await this.plumbing.syncNat(
      current.map((c) => c.port),
      routedIn,
    );
  }
}

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export async function startAgentEmulator(opts: AgentEmulatorOptions): Promise<RunningAgentEmulator> {
  const { log } = opts;
  const agent = new AgentEmulator(opts);
  const vtepIp = await agent.start();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = (req.url ?? "/").split("?")[0]!;
      const done = ([status, doc]: Reply): void => {
        res.writeHead(status, "OK", { "Content-Type": "application/json; charset=UTF-8" });
        res.end(JSON.stringify(doc));
        log.debug({ method: req.method, path, status }, "agent request");
      };
      dispatch(agent.routes, req.method ?? "GET", path, body).then(done, (err: unknown) =>
        done(fail(`{ ${(err as Error).message} }`)),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 9091, opts.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address() as { port: number };
  const url = `http://${opts.host ?? "127.0.0.1"}:${addr.port}`;
  await agent
    .sync(true)
    .catch((err: unknown) => log.warn({ err: (err as Error).message }, "initial sync failed"));
  log.info(
    { urls: [url], hostname: opts.hostname, vtepIp, generation: agent.generation, portsRoot: opts.portsRoot },
    "vRouter agent emulator ready",
  );

  return {
    url,
    subscriptions: () => new Map([...agent.table.vms].map(([vm, m]) => [vm, [...m.keys()]])),
    async stop(o = {}) {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await agent.stop(o.keepDataPlane === true);
    },
  };
}
