// The kernel forwarder's data plane (issue 4): local connections are one veth pair with an end in each
// namespace (created directly in place); remote connections are a VXLAN device per side, created in the
// node namespace (so its tunnel socket is on the underlay) directly into the pod namespace. Every link is tagged (alias) with the
// forwarder's connection id, so a restarted forwarder can adopt what is still refreshed and delete the rest.
// Deletes (~20 ms of kernel time each) run after the Close has been answered.
import type { Connection, Mechanism } from "../../api/connection.js";
import type { CallContext } from "../../core/context.js";
import { invalidArgument, permissionDenied, StatusError } from "../../core/errors.js";
import { status } from "@grpc/grpc-js";
import {
  Dataplane,
  DataplaneError,
  isErrno,
  listNamespaces,
  NetnsRefusedError,
  type NetnsHandle,
} from "../../dataplane/index.js";
import { errnoOf } from "../../dataplane/errors.js";
import {
  defaultIfName,
  kernelParams as K,
  vxlanDefaultPort,
  vxlanParams as V,
} from "../../networkservice/mechanisms/common.js";
import { isTrustedNetnsUrl } from "../../networkservice/mechanisms/kernel.js";
import { dataplaneStatus, type DataPlane, type Leg } from "../dataplane.js";
import { LinkDeleter } from "../../dataplane/deleter.js";
import { NetnsRefs } from "../../dataplane/refs.js";
import { applySide, emptySide, sideConfig, type SideConfig } from "./ipcontext.js";
import { rootLogger } from "../../core/log.js";

export const aliasPrefix = "nsm:";
const stateKey = Symbol("kernel.state");

/** One interface this forwarder made for a connection, and what it put on it. */
interface Side {
  ns: NetnsHandle;
  ifname: string;
  applied: SideConfig;
}

interface State {
  kind: "veth" | "vxlan-client" | "vxlan-server";
  /** Identity of what was built: a change means rebuild. */
  key: string;
  client?: Side;
  endpoint?: Side;
  mtu?: number;
}

export interface KernelDataPlaneOptions {
  /** This node's underlay address: the local end of VXLAN tunnels. */
  tunnelIp: string;
  vxlanPort?: number;
  /** Forwarder name: part of every link's alias, so forwarders never collect each other's links. */
  owner: string;
  /** Namespace holding the underlay (default: the forwarder's own). */
  nodeNetns?: string;
  /**
   * Let clients and endpoints name the host's namespace, the forwarder's own or its node namespace in a
   * mechanism's inodeURL (default false: a pod never lives there, and plumbing into it is an attack).
   */
  allowHostNetns?: boolean;
  dataplane?: Dataplane;
}

export class KernelDataPlane implements DataPlane {
  readonly name = "kernel";
  readonly incoming = ["KERNEL", "VXLAN"];
  readonly dp: Dataplane;
  private readonly node: NetnsHandle;
  private readonly port: number;
  /** Deletes in flight per "<netns inode>/<ifname>": a new link of that name waits for them. */
  private readonly pendingDeletes = new Map<string, Promise<void>>();
  /** Deletes run on a worker thread: the kernel holds the sender ~20 ms per delete. */
  private readonly deleter = new LinkDeleter();
  /**
   * Links a previous incarnation made (scanOrphans, before this one serves), by connection id, until the
   * connection is built again (adopted, or rebuilt under other names), closed, or collected after the grace.
   * They must not outlive their connection's Close or rebuild: they hold the addresses the endpoint hands out
   * again.
   */
  private readonly orphans = new Map<string, { inodeUrl: string; name: string }[]>();
  /** A side of a connection, or a build in progress, holds its namespace handle open. */
  private readonly refs: NetnsRefs;

  constructor(private readonly opts: KernelDataPlaneOptions) {
    this.dp = opts.dataplane ?? new Dataplane();
    this.node = this.dp.netns(opts.nodeNetns);
    this.refs = new NetnsRefs(this.node);
    this.port = opts.vxlanPort ?? vxlanDefaultPort;
  }

  outgoing(kind: "LOCAL" | "REMOTE", conn: Connection): Mechanism[] {
    if (kind === "LOCAL")
      return [{ cls: "LOCAL", type: "KERNEL", parameters: { [K.name]: defaultIfName(conn.networkService) } }];
    return [
      {
        cls: "REMOTE",
        type: "VXLAN",
        parameters: { [V.srcIp]: this.opts.tunnelIp, [V.srcPort]: String(this.port) },
      },
    ];
  }

  async apply(incoming: Leg, outgoing: Leg, ctx: CallContext): Promise<void> {
    const conn = incoming.conn;
    const meta = ctx.connMeta();
    const prev = meta.get(stateKey) as State | undefined;
    const plan = this.plan(incoming.mechanism, outgoing.mechanism);
    const mtu = conn.context?.MTU || undefined;
    let state = prev && prev.key === plan.key ? prev : undefined;
    if (prev && !state) {
      ctx.log.info({ connId: conn.id }, "mechanism changed: rebuilding the interfaces");
      this.releaseState(prev);
      meta.delete(stateKey);
    }
    if (!state) {
      const borrowed: NetnsHandle[] = [];
      try {
        state = await this.build(plan, conn.id, mtu, ctx, borrowed);
      } catch (err) {
        borrowed.forEach((ns) => this.refs.release(ns));
        throw err;
      }
      meta.set(stateKey, state);
    } else if (mtu && mtu !== state.mtu) {
      for (const s of [state.client, state.endpoint]) if (s) await s.ns.link.setMtu(s.ifname, mtu);
      state.mtu = mtu;
    }
    const ip = conn.context?.ipContext;
    const sides = [
      [state.client, "src"],
      [state.endpoint, "dst"],
    ] as const;
    try {
      for (const [side, which] of sides) {
        if (!side) continue;
        const want = sideConfig(ip, which);
        try {
          await applySide(side.ns, side.ifname, side.applied, want);
        } catch (err) {
          // An endpoint hands a released address out again at once; the link that held it may still be
          // on its way out (deletes run after Close). Wait for those deletes, then try once more.
          if (!isErrno(err, "EADDRINUSE") || this.pendingDeletes.size === 0) throw err;
          await this.settle();
          await applySide(side.ns, side.ifname, side.applied, want);
        }
        side.applied = want;
      }
    } catch (err) {
      throw toStatus(err, conn.id);
    }
  }

  release(incoming: Leg, _outgoing: Leg, ctx: CallContext): Promise<void> {
    const state = ctx.connMeta().get(stateKey) as State | undefined;
    ctx.connMeta().delete(stateKey);
    if (state) this.releaseState(state);
    else void this.dropOrphans(incoming.conn.id, []);
    return Promise.resolve();
  }

  /** Deletes the links a previous incarnation made for `connId`, except those named in `keep` (adopted). */
  private async dropOrphans(connId: string, keep: { ns: NetnsHandle; name: string }[]): Promise<void> {
    const links = this.orphans.get(connId);
    if (!links) return;
    this.orphans.delete(connId);
    const stale = links.filter((l) => !keep.some((k) => k.name === l.name && k.ns.inodeUrl === l.inodeUrl));
    if (stale.length === 0) return;
    rootLogger.info(
      { connId, links: stale.map((l) => l.name) },
      "removing links a previous forwarder made for it",
    );
    await Promise.all(stale.map((l) => this.deleteOrphan(l)));
  }

  /** Deletes one link of a previous incarnation; its namespace handle is closed again unless in use. */
  private async deleteOrphan(l: { inodeUrl: string; name: string }): Promise<boolean> {
    let ns: NetnsHandle;
    try {
      // By inode: a /proc/<pid> path seen at the scan may be gone while the namespace lives on.
      ns = this.dp.netns(l.inodeUrl);
    } catch {
      return false; // the namespace is gone, and its links with it
    }
    await this.deleteLink(ns, l.name);
    if (!this.refs.inUse(ns.inodeUrl) && ns !== this.node) ns.close();
    return true;
  }

  /** A delete on the worker, tracked so that a new link of the same name waits for it. */
  private deleteLink(ns: NetnsHandle, ifname: string): Promise<void> {
    const key = `${ns.inodeUrl}/${ifname}`;
    const p: Promise<void> = this.deleter
      .delete(ns, ifname)
      .catch(() => undefined)
      .finally(() => {
        if (this.pendingDeletes.get(key) === p) this.pendingDeletes.delete(key);
      });
    this.pendingDeletes.set(key, p);
    return p;
  }

  /** Waits for deletes still running (tests, shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.pendingDeletes.values()]);
  }

  /** Resolves when the delete worker has ended (so exiting the process cannot cut it mid-call). */
  async close(): Promise<void> {
    // The worker may still fall back to this thread's handles for a delete: close them after it has ended.
    if (!(await this.deleter.close()))
      rootLogger.warn("link-delete worker still busy at close; exiting anyway");
    this.dp.close();
  }

  private plan(
    inMech: Mechanism,
    outMech: Mechanism,
  ): { kind: State["kind"]; key: string; inMech: Mechanism; outMech: Mechanism } {
    const kind: State["kind"] =
      inMech.type === "KERNEL" && outMech.type === "KERNEL"
        ? "veth"
        : inMech.type === "KERNEL" && outMech.type === "VXLAN"
          ? "vxlan-client"
          : inMech.type === "VXLAN" && outMech.type === "KERNEL"
            ? "vxlan-server"
            : (() => {
                throw invalidArgument(
                  "mechanism",
                  `the kernel forwarder cannot connect ${inMech.type} to ${outMech.type}`,
                );
              })();
    const p = (m: Mechanism, k: string): string => m.parameters[k] ?? "";
    const key = [
      kind,
      p(inMech, K.inodeURL),
      p(inMech, K.name),
      p(outMech, K.inodeURL),
      p(outMech, K.name),
      p(inMech, V.vni),
      p(outMech, V.vni),
      p(inMech, V.srcIp),
      p(outMech, V.dstIp),
    ].join("|");
    return { kind, key, inMech, outMech };
  }

  /** Builds (or adopts) the links; the namespace handles it opens are pushed to `borrowed`. */
  private async build(
    plan: ReturnType<KernelDataPlane["plan"]>,
    connId: string,
    mtu: number | undefined,
    ctx: CallContext,
    borrowed: NetnsHandle[],
  ): Promise<State> {
    const alias = this.alias(connId);
    const { inMech, outMech } = plan;
    try {
      if (plan.kind === "veth") {
        const clientNs = this.namespace(inMech, "incoming", borrowed, ctx);
        const nseNs = this.namespace(outMech, "outgoing", borrowed, ctx);
        const cName = ifname(inMech, "incoming");
        const eName = ifname(outMech, "outgoing");
        await this.dropOrphans(connId, [
          { ns: clientNs, name: cName },
          { ns: nseNs, name: eName },
        ]);
        const state: State = {
          kind: plan.kind,
          key: plan.key,
          mtu,
          client: this.side(clientNs, cName),
          endpoint: this.side(nseNs, eName),
        };
        const create = (): Promise<void> =>
          clientNs.link.createVeth({
            name: cName,
            alias,
            up: true,
            ...(mtu ? { mtu } : {}),
            peer: { name: eName, netns: nseNs, alias, up: true, ...(mtu ? { mtu } : {}) },
          });
        // Usually neither name exists: create at once (the create refuses a taken name with EEXIST), and
        // look at what holds a name only then — two link lookups fewer per setup.
        await this.deletesOf(clientNs, cName);
        await this.deletesOf(nseNs, eName);
        if (await created(create)) return state;
        const [c, e] = [await this.mine(clientNs, cName, alias), await this.mine(nseNs, eName, alias)];
        if (c === "veth" && e === "veth") {
          ctx.log.info({ connId }, "adopting the veth pair a previous forwarder made");
          return state;
        }
        if (c) await clientNs.link.delete(cName, { missingOk: true });
        if (e) await nseNs.link.delete(eName, { missingOk: true });
        await create();
        return state;
      }
      const tunnel = plan.kind === "vxlan-client" ? outMech : inMech;
      const vni = Number(tunnel.parameters[V.vni]);
      if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) {
        throw invalidArgument("mechanism.parameters.vni", `"${tunnel.parameters[V.vni] ?? ""}" is not a VNI`);
      }
      const local = plan.kind === "vxlan-client" ? tunnel.parameters[V.srcIp] : tunnel.parameters[V.dstIp];
      const remote = plan.kind === "vxlan-client" ? tunnel.parameters[V.dstIp] : tunnel.parameters[V.srcIp];
      if (!local || !remote) throw invalidArgument("mechanism.parameters", "VXLAN needs src_ip and dst_ip");
      const leg = plan.kind === "vxlan-client" ? "incoming" : "outgoing";
      const podMech = plan.kind === "vxlan-client" ? inMech : outMech;
      const podNs = this.namespace(podMech, leg, borrowed, ctx);
      const name = ifname(podMech, leg);
      await this.dropOrphans(connId, [{ ns: podNs, name }]);
      const s = this.side(podNs, name);
      const state: State =
        plan.kind === "vxlan-client"
          ? { kind: plan.kind, key: plan.key, mtu, client: s }
          : { kind: plan.kind, key: plan.key, mtu, endpoint: s };
      // Created from the node namespace (its tunnel socket stays on the underlay) straight into the pod. Without
      // an MTU in the context, leave room for the VXLAN header on the underlay.
      const tunnelMtu = mtu ?? (await this.underlayMtu(local));
      const create = (): Promise<void> =>
        this.node.link.createVxlan({
          name,
          netns: podNs,
          vni,
          local,
          remote,
          port: this.port,
          alias,
          up: true,
          ...(tunnelMtu ? { mtu: tunnelMtu } : {}),
        });
      const vniInUse = (err: unknown): unknown =>
        isErrno(err, "EEXIST")
          ? new StatusError(
              status.ALREADY_EXISTS,
              `VXLAN VNI ${vni} towards ${remote} is already in use on this node (connection ${connId})`,
            )
          : err;
      // As for veth: create at once; EEXIST is either the name (taken in the pod) or the VNI (taken on the
      // node), and only then is it worth looking at the name.
      await this.deletesOf(podNs, name);
      if (await created(create)) return state;
      const existing = await this.mine(podNs, name, alias);
      if (existing === "vxlan") {
        const link = await podNs.link.get(name);
        if (link.vxlan?.vni === vni) {
          ctx.log.info({ connId }, "adopting the VXLAN interface a previous forwarder made");
          return state;
        }
      }
      if (!existing) throw vniInUse(new DataplaneError(podNs.ctx("link add vxlan", name), errnoOf("EEXIST")));
      await podNs.link.delete(name, { missingOk: true });
      await create().catch((err: unknown) => {
        throw vniInUse(err);
      });
      return state;
    } catch (err) {
      ctx.log.warn({ connId, err: (err as Error).message }, "building the data plane failed");
      throw toStatus(err, connId);
    }
  }

  /**
   * Whether `name` in `ns` is ours for this connection (its kind), absent (undefined), or someone else's
   * (error). Waits first for a pending delete of that name.
   */
  private async mine(ns: NetnsHandle, name: string, alias: string): Promise<string | undefined> {
    await this.deletesOf(ns, name);
    const existing = await ns.link.find(name);
    if (!existing) return undefined;
    if (existing.alias === alias) return existing.kind ?? "unknown";
    throw new StatusError(
      status.ALREADY_EXISTS,
      `interface ${name} already exists in ${ns.label}${existing.alias ? ` (owned by ${existing.alias})` : ""}`,
    );
  }

  /** Waits for a pending delete of `name` in `ns`, if there is one. */
  private async deletesOf(ns: NetnsHandle, name: string): Promise<void> {
    await this.pendingDeletes.get(`${ns.inodeUrl}/${name}`);
  }

  private side(ns: NetnsHandle, ifname: string): Side {
    return { ns, ifname, applied: emptySide };
  }

  private readonly underlayMtus = new Map<string, number | undefined>();

  /** MTU of the node interface holding `local`, minus VXLAN's overhead (50 bytes over IPv4, 70 over IPv6). */
  private async underlayMtu(local: string): Promise<number | undefined> {
    if (this.underlayMtus.has(local)) return this.underlayMtus.get(local);
    let mtu: number | undefined;
    const addr = (await this.node.addr.list()).find((a) => a.address === local);
    if (addr) mtu = (await this.node.link.get(addr.index)).mtu - (local.includes(":") ? 70 : 50);
    this.underlayMtus.set(local, mtu);
    return mtu;
  }

  private alias(connId: string): string {
    return `${aliasPrefix}${this.opts.owner}:${connId}`;
  }

  /**
   * After a restart, before this incarnation serves (so no Request can race it): finds the links tagged by
   * this forwarder. Returns how many.
   */
  async scanOrphans(log: CallContext["log"]): Promise<number> {
    const prefix = `${aliasPrefix}${this.opts.owner}:`;
    let found = 0;
    for (const { path } of listNamespaces()) {
      try {
        const ns = this.dp.netns(path);
        for (const l of await ns.link.listByAliasPrefix(prefix)) {
          const connId = l.alias!.slice(prefix.length);
          const links = this.orphans.get(connId) ?? [];
          links.push({ inodeUrl: ns.inodeUrl, name: l.name });
          this.orphans.set(connId, links);
          found++;
        }
        if (!this.refs.inUse(ns.inodeUrl) && ns !== this.node) ns.close();
      } catch {
        // a namespace that vanished while we looked
      }
    }
    if (found > 0)
      log.info({ links: found }, "found links of a previous incarnation: keeping those refreshed in time");
    return found;
  }

  /**
   * After `graceMs`: the links scanOrphans found whose connection was neither refreshed (adopted), rebuilt
   * nor closed meanwhile belong to nobody any more and are deleted. Returns how many were removed.
   */
  async collectOrphans(graceMs: number, log: CallContext["log"]): Promise<number> {
    if (this.orphans.size === 0) return 0;
    await new Promise((r) => setTimeout(r, graceMs));
    const left = [...this.orphans.values()].flat();
    this.orphans.clear();
    let removed = 0;
    for (const l of left) if (await this.deleteOrphan(l)) removed++;
    log.info({ removed }, "orphaned links removed");
    return removed;
  }

  /**
   * The pod namespace a leg's mechanism names (from the client or the endpoint, so untrusted): by inode://
   * only unless our own code vouched for a file:// URL, and not the host's, ours or the node's.
   */
  private namespace(m: Mechanism, leg: string, borrowed: NetnsHandle[], ctx: CallContext): NetnsHandle {
    const field = `${leg} mechanism.parameters.inodeURL`;
    const url = m.parameters[K.inodeURL];
    if (!url) throw invalidArgument(field, "missing: which network namespace?");
    try {
      const ns = this.refs.borrow(
        this.dp.clientNetns(url, {
          trusted: isTrustedNetnsUrl(ctx, url),
          allowHostNetns: this.opts.allowHostNetns ?? false,
          reserved: [this.node.inodeUrl],
        }),
      );
      borrowed.push(ns);
      return ns;
    } catch (err) {
      if (err instanceof NetnsRefusedError && err.reason === "denied")
        throw permissionDenied(`${field}: ${err.message}`);
      throw invalidArgument(field, `network namespace ${url}: ${(err as Error).message}`);
    }
  }

  private releaseState(state: State): void {
    // One end of a veth takes its peer with it; a VXLAN side is its own link.
    const victims = state.kind === "veth" ? [state.client!] : [state.client ?? state.endpoint!];
    const sides = [state.client, state.endpoint].filter((x): x is Side => x !== undefined);
    const deletes = victims.map((v) => this.deleteLink(v.ns, v.ifname));
    void Promise.all(deletes).then(() => sides.forEach((x) => this.refs.release(x.ns)));
  }
}

/** Runs a create: true if it made the link, false if a name it needs is taken (EEXIST); other errors throw. */
async function created(create: () => Promise<void>): Promise<boolean> {
  try {
    await create();
    return true;
  } catch (err) {
    if (isErrno(err, "EEXIST")) return false;
    throw err;
  }
}

function ifname(m: Mechanism, leg: string): string {
  const name = m.parameters[K.name];
  if (!name) throw invalidArgument(`${leg} mechanism.parameters.name`, "missing: interface name");
  return name;
}

function toStatus(err: unknown, connId: string): unknown {
  return dataplaneStatus(err, `data plane for connection ${connId}`);
}
