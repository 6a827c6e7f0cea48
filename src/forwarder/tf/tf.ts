// The TF forwarder's data plane: plays TF's CNI (spec §1.5) for each connection the TF virtual-network
// endpoint accepted. With the TF ids from the connection context it waits for the agent to have the VM's
// config (/vm-cfg), creates a veth (host end `tap…` named as the CNI names it, in the compute namespace; the
// other end in the pod with TF's MAC), writes the port file, POSTs /vm, polls GET /vm/<uuid>, and applies
// the addresses (IPv4, IPv6 or both) and routes in the pod. The vRouter carries the traffic (between
// computes too): no tunnel here. Close: DELETE /vm, port files, veth. Any failure half-way undoes the steps
// before it.
import { status } from "@grpc/grpc-js";
import type { Connection, Mechanism } from "../../api/connection.js";
import type { CallContext } from "../../core/context.js";
import { invalidArgument, permissionDenied, StatusError } from "../../core/errors.js";
import {
  Dataplane,
  isErrno,
  NetnsRefusedError,
  writeSysctl,
  type NetnsHandle,
} from "../../dataplane/index.js";
import { isTrustedNetnsUrl } from "../../networkservice/mechanisms/kernel.js";
import { LinkDeleter } from "../../dataplane/deleter.js";
import { NetnsRefs } from "../../dataplane/refs.js";
import { kernelParams as K } from "../../networkservice/mechanisms/common.js";
import { dataplaneStatus, type DataPlane, type Leg } from "../dataplane.js";
import { applySide, emptySide, sideConfig, type SideConfig } from "../kernel/ipcontext.js";
import {
  addressesNotInContext,
  AgentClient,
  AgentError,
  cniPollPolicy,
  safeName,
  uuidPattern,
  type PollPolicy,
  type VmPort,
} from "./agent.js";
import { tfKeys, vmNameOf } from "./keys.js";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { rootLogger } from "../../core/log.js";

export const tfAliasPrefix = "nsm:";
const stateKey = Symbol("tf.state");

interface State {
  key: string;
  pod: NetnsHandle;
  ifname: string;
  hostIf: string;
  vmUuid: string;
  vmName: string;
  applied: SideConfig;
}

export interface TfDataPlaneOptions {
  /** Forwarder name: part of every link's alias, so forwarders never collect each other's links. */
  owner: string;
  agent: AgentClient;
  /** The CNI's poll-timeout/poll-retries (default 3 s × 20). */
  poll?: PollPolicy;
  /** MTU of the pod interface (the CNI's `mtu`, default 1500). */
  mtu?: number;
  /** Namespace of the compute (where the vRouter sees tap interfaces); default the forwarder's own. */
  nodeNetns?: string;
  dataplane?: Dataplane;
  /** Let clients name the host's, the forwarder's own or the node's namespace (default false). */
  allowHostNetns?: boolean;
}

/**
 * The host-side name: `tap` + 11 characters of the VMI uuid, as TF names Nova's taps. The CNI's variant
 * (`tap` + 11 characters of `<ifname>-<vm uuid>`, spec §1.5) would leave NSM's longer interface names 0–3
 * uuid characters and make two connections of one node collide.
 */
export const tapName = (vmiUuid: string): string => `tap${vmiUuid.toLowerCase().slice(0, 11)}`;

/** Routes to everything get this metric: they never replace a default route the pod already has. */
export const defaultRouteMetric = 4096;

export class TfDataPlane implements DataPlane {
  readonly name = "tf";
  readonly incoming = ["KERNEL"];
  readonly dp: Dataplane;
  private readonly node: NetnsHandle;
  private readonly deleter = new LinkDeleter();
  private readonly adopted = new Set<string>();
  private readonly poll: PollPolicy;
  private readonly refs: NetnsRefs;
  /** Deletes in flight per "<pod netns inode>/<ifname>". */
  private readonly pendingDeletes = new Map<string, Promise<void>>();

  constructor(private readonly opts: TfDataPlaneOptions) {
    this.dp = opts.dataplane ?? new Dataplane();
    this.node = this.dp.netns(opts.nodeNetns);
    this.refs = new NetnsRefs(this.node);
    this.poll = opts.poll ?? cniPollPolicy;
  }

  /** The vRouter carries the traffic: towards the endpoint (local or remote) only the control plane goes. */
  outgoing(kind: "LOCAL" | "REMOTE"): Mechanism[] {
    return [{ cls: kind, type: "NOOP", parameters: {} }];
  }

  async apply(incoming: Leg, _outgoing: Leg, ctx: CallContext): Promise<void> {
    const conn = incoming.conn;
    const x = conn.context?.extraContext ?? {};
    const vmUuid = x[tfKeys.vmUuid];
    const vmName = x[tfKeys.vmName];
    const vmiUuid = x[tfKeys.vmiUuid];
    const vnUuid = x[tfKeys.vnUuid];
    if (!vmUuid || !vmName || !vmiUuid || !vnUuid) {
      throw new StatusError(
        status.FAILED_PRECONDITION,
        `the endpoint returned no TF port (extra_context ${tfKeys.vmiUuid} …): is "${conn.networkService}" served by a tf-vn endpoint?`,
      );
    }
    for (const [k, v] of [
      [tfKeys.vmUuid, vmUuid],
      [tfKeys.vmiUuid, vmiUuid],
      [tfKeys.vnUuid, vnUuid],
    ] as const) {
      if (!uuidPattern.test(v))
        throw invalidArgument(`connection.context.extra_context["${k}"]`, `"${v}" is not a uuid`);
    }
    if (!safeName(vmName)) {
      throw invalidArgument(
        `connection.context.extra_context["${tfKeys.vmName}"]`,
        `"${vmName}" is not a VM name`,
      );
    }
    const ifname = incoming.mechanism.parameters[K.name];
    if (!ifname) throw invalidArgument("mechanism.parameters.name", "missing: interface name");
    const inode = incoming.mechanism.parameters[K.inodeURL];
    if (!inode) throw invalidArgument("mechanism.parameters.inodeURL", "missing: which network namespace?");
    const meta = ctx.connMeta();
    const key = [vmiUuid, inode, ifname].join("|");
    let state = meta.get(stateKey) as State | undefined;
    if (state && state.key !== key) {
      ctx.log.info({ connId: conn.id }, "TF port or pod changed: rebuilding");
      await this.teardown(state, conn.id, ctx.log);
      meta.delete(stateKey);
      state = undefined;
    }
    const want = podConfig(conn.context?.ipContext);
    if (state) {
      try {
        // A refresh that brings the first IPv6 address (the VN got an IPv6 subnet) needs IPv6 on too.
        if (hasIpv6(want) && !hasIpv6(state.applied)) podIpv6(state.pod, state.ifname, conn.id);
        await applySide(state.pod, state.ifname, state.applied, want);
      } catch (err) {
        throw toStatus(err, conn.id);
      }
      state.applied = want;
      return;
    }
    let pod: NetnsHandle;
    try {
      // The client's namespace is untrusted input, as in the kernel forwarder: never the host's or ours.
      pod = this.refs.borrow(
        this.dp.clientNetns(inode, {
          trusted: isTrustedNetnsUrl(ctx, inode),
          allowHostNetns: this.opts.allowHostNetns ?? false,
          reserved: [this.node.inodeUrl],
        }),
      );
    } catch (err) {
      if (err instanceof NetnsRefusedError && err.reason === "denied")
        throw permissionDenied(`mechanism.parameters.inodeURL: ${err.message}`);
      throw invalidArgument(
        "mechanism.parameters.inodeURL",
        `network namespace ${inode}: ${(err as Error).message}`,
      );
    }
    const built: State = {
      key,
      pod,
      ifname,
      hostIf: tapName(vmiUuid),
      vmUuid,
      vmName,
      applied: emptySide,
    };
    this.adopted.add(conn.id);
    try {
      await this.build(built, conn, vmiUuid, vnUuid, want, ctx);
    } catch (err) {
      this.adopted.delete(conn.id);
      ctx.log.warn({ connId: conn.id, err: (err as Error).message }, "TF port setup failed: undoing it");
      await this.teardown(built, conn.id, ctx.log);
      throw toStatus(err, conn.id);
    }
    meta.set(stateKey, built);
  }

  async release(incoming: Leg, _outgoing: Leg, ctx: CallContext): Promise<void> {
    const state = ctx.connMeta().get(stateKey) as State | undefined;
    ctx.connMeta().delete(stateKey);
    this.adopted.delete(incoming.conn.id);
    if (state) await this.teardown(state, incoming.conn.id, ctx.log);
  }

  /** Resolves when the delete worker has ended (so exiting the process cannot cut it mid-call). */
  async close(): Promise<void> {
    this.closed = true;
    // The worker may still fall back to this thread's handles for a delete: close them after it has ended.
    if (!(await this.deleter.close()))
      rootLogger.warn("link-delete worker still busy at close; exiting anyway");
    this.opts.agent.close();
    this.dp.close();
  }

  private async build(
    s: State,
    conn: Connection,
    vmiUuid: string,
    vnUuid: string,
    want: SideConfig,
    ctx: CallContext,
  ): Promise<void> {
    const agent = this.opts.agent;
    const alias = this.alias(conn.id);
    const mac = conn.context?.ethernetContext?.srcMac || undefined;
    const mtu = this.opts.mtu ?? 1500;
    // Step 2 of the CNI: the agent has the VM's config (the VR → VM ref reached it).
    await agent.pollVmCfg(agent.vmCfgKey(s.vmName, s.vmUuid), this.poll, ctx.signal);
    await this.pendingDeletes.get(`${s.pod.inodeUrl}/${s.ifname}`);
    const existing = await this.node.link.find(s.hostIf);
    const adopt = existing?.alias === alias && (await s.pod.link.find(s.ifname))?.alias === alias;
    if (existing && !adopt) {
      if (existing.alias === alias) await this.node.link.delete(s.hostIf, { missingOk: true });
      else {
        throw new StatusError(
          status.ALREADY_EXISTS,
          `interface ${s.hostIf} already exists on this compute${existing.alias ? ` (owned by ${existing.alias})` : ""}`,
        );
      }
    }
    if (adopt) {
      ctx.log.info({ connId: conn.id, tap: s.hostIf }, "adopting the TF port a previous forwarder made");
    } else {
      await this.node.link.createVeth({
        name: s.hostIf,
        alias,
        up: true,
        mtu,
        peer: { name: s.ifname, netns: s.pod, alias, up: true, mtu, ...(mac ? { mac } : {}) },
      });
      // As the CNI does: no router advertisements accepted on the host end.
      try {
        writeSysctl(this.node, `net/ipv6/conf/${s.hostIf}/accept_ra`, "0");
      } catch {
        // IPv6 disabled on this compute
      }
    }
    const port: VmPort = {
      time: new Date().toISOString(),
      "vm-id": conn.id,
      "vm-uuid": s.vmUuid,
      "vm-name": s.vmName,
      "host-ifname": s.hostIf,
      "vm-ifname": s.ifname,
      "vm-namespace": s.pod.path,
      "vn-uuid": vnUuid,
      "vmi-uuid": vmiUuid,
    };
    await agent.writePortFile(port);
    await agent.postVm(port);
    const docs = await agent.pollVm(s.vmUuid, this.poll, ctx.signal);
    const doc = docs.find((d) => d.id === vmiUuid);
    if (!doc)
      throw new AgentError(`vRouter agent GET /vm/${s.vmUuid} does not list interface ${vmiUuid}`, 404);
    const differ = addressesNotInContext(doc, want.addrs);
    if (differ.length > 0) {
      ctx.log.warn(
        { connId: conn.id, agent: differ, context: want.addrs },
        "the agent's address differs from the endpoint's",
      );
    }
    if (adopt) {
      s.applied = want;
      return;
    }
    if (hasIpv6(want)) podIpv6(s.pod, s.ifname, conn.id);
    try {
      await applySide(s.pod, s.ifname, emptySide, want);
    } catch (err) {
      // TF hands a released address out again at once; the pod interface that held it may still be on its
      // way out (deletes run after Close). Wait for those deletes, then try once more (as the kernel forwarder).
      if (!isErrno(err, "EADDRINUSE") || this.pendingDeletes.size === 0) throw err;
      await Promise.all([...this.pendingDeletes.values()]);
      await applySide(s.pod, s.ifname, emptySide, want);
    }
    s.applied = want;
  }

  /** Undoes everything of a port; never throws (DELETE /vm is retried in the background). */
  private async teardown(s: State, connId: string, log: Logger): Promise<void> {
    await this.unsubscribe(s.vmUuid, connId, log);
    await this.opts.agent.removePortFiles(s.vmName, s.vmUuid).catch(() => undefined);
    // Only our own link: a name taken by somebody else (the build refused it) is not ours to delete. The
    // veth's pod end goes with the host end.
    const link = await this.node.link.find(s.hostIf).catch(() => undefined);
    if (link?.alias !== this.alias(connId)) return this.refs.release(s.pod);
    // The delete (~20 ms of kernel time) runs after the Close is answered, as in the kernel forwarder; a new
    // interface of the same name in that pod waits for it.
    const key = `${s.pod.inodeUrl}/${s.ifname}`;
    const p: Promise<void> = this.deleter
      .delete(this.node, s.hostIf)
      .catch(() => undefined)
      .finally(() => {
        if (this.pendingDeletes.get(key) === p) this.pendingDeletes.delete(key);
        this.refs.release(s.pod);
      });
    this.pendingDeletes.set(key, p);
  }

  private alias(connId: string): string {
    return `${tfAliasPrefix}${this.opts.owner}:${connId}`;
  }

  /** DELETE /vm until the agent takes it: an agent down at Close must not keep the subscription forever. */
  private async unsubscribe(vmUuid: string, connId: string, log: Logger, attempt = 0): Promise<void> {
    try {
      await this.opts.agent.deleteVm(vmUuid);
    } catch (err) {
      if (attempt === 0) log.warn({ connId, err: (err as Error).message }, "DELETE /vm failed; retrying");
      if (attempt >= this.deleteRetries || this.closed) return;
      setTimeout(() => void this.unsubscribe(vmUuid, connId, log, attempt + 1), 2000).unref();
    }
  }

  /** DELETE /vm retries (2 s apart) before giving up: ten minutes. */
  private readonly deleteRetries = 300;
  private closed = false;

  /**
   * After a restart: ports of connections nobody refreshes within `graceMs` are removed — DELETE /vm, port
   * files, veth — found by their port files (ours: VM named nsm__…, vm-id = connection id) and tap aliases,
   * also when the pod and its veth are gone already. Returns how many.
   */
  async collectOrphans(graceMs: number, log: Logger): Promise<number> {
    const agent = this.opts.agent;
    const prefix = `${tfAliasPrefix}${this.opts.owner}:`;
    const ports: VmPort[] = [];
    for (const dir of await readdir(agent.portDir).catch(() => [] as string[])) {
      for (const f of await readdir(join(agent.portDir, dir)).catch(() => [] as string[])) {
        try {
          const p = JSON.parse(await readFile(join(agent.portDir, dir, f), "utf8")) as VmPort;
          if (p["vm-name"]?.startsWith(vmNameOf("")) && p["vm-id"]) ports.push(p);
        } catch {
          // not a port file
        }
      }
    }
    const links = await this.node.link.listByAliasPrefix(prefix);
    if (ports.length === 0 && links.length === 0) return 0;
    log.info(
      { ports: ports.length, taps: links.length, graceMs },
      "found TF ports of a previous incarnation",
    );
    await new Promise((r) => setTimeout(r, graceMs));
    let removed = 0;
    for (const p of ports) {
      if (this.adopted.has(p["vm-id"])) continue;
      await agent.deleteVm(p["vm-uuid"]).catch(() => undefined);
      await agent.removePortFiles(p["vm-name"], p["vm-uuid"]).catch(() => undefined);
      removed++;
    }
    for (const l of links) {
      if (this.adopted.has(l.alias!.slice(prefix.length))) continue;
      await this.node.link.delete(l.name, { missingOk: true }).catch(() => undefined);
    }
    log.info({ removed }, "orphaned TF ports removed");
    return removed;
  }
}

const hasIpv6 = (c: SideConfig): boolean => c.addrs.some((a) => a.includes(":"));

/**
 * Makes IPv6 usable at once on the pod end: router advertisements off first (TF's agent answers router
 * solicitations; an RA default route or SLAAC address would compete with TF's), then IPv6 on (a namespace
 * may default to disabled). The addresses themselves go in without DAD (the data plane's default for IPv6),
 * so routes can use them as source right away.
 */
function podIpv6(pod: NetnsHandle, ifname: string, connId: string): void {
  for (const [key, value] of [
    ["accept_ra", "0"],
    ["disable_ipv6", "0"],
  ] as const) {
    try {
      writeSysctl(pod, `net/ipv6/conf/${ifname}/${key}`, value);
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      throw new StatusError(
        status.FAILED_PRECONDITION,
        `TF port of connection ${connId}: the VN gives an IPv6 address, but the pod's network namespace has no IPv6 (no /proc/sys/net/ipv6/conf/${ifname}); enable IPv6 in the kernel or use an IPv4-only VN`,
      );
    }
  }
}

/** The client side of the IP context, with routes to everything below the pod's own default route. */
function podConfig(ip: Parameters<typeof sideConfig>[0]): SideConfig {
  const c = sideConfig(ip, "src");
  return {
    ...c,
    routes: c.routes.map((r) =>
      r.dst === "0.0.0.0/0" || r.dst === "::/0" ? { ...r, metric: defaultRouteMetric } : r,
    ),
  };
}

function toStatus(err: unknown, connId: string): unknown {
  if (err instanceof StatusError) return err;
  if (err instanceof AgentError) {
    const code =
      err.status === -1
        ? status.CANCELLED
        : err.status === 404
          ? status.DEADLINE_EXCEEDED
          : err.status === 400
            ? status.INVALID_ARGUMENT
            : status.UNAVAILABLE;
    return new StatusError(code, `TF port of connection ${connId}: ${err.message}`);
  }
  return dataplaneStatus(err, `TF port of connection ${connId}`);
}
