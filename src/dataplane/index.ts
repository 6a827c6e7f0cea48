// The data plane: the only code in nsm-ts that changes the kernel. It speaks rtnetlink through one socket
// per network namespace (see netns.ts) and groups operations per object family, like vishvananda/netlink:
//
//   const dp = new Dataplane();
//   const node = dp.netns();                                  // the calling thread's namespace
//   const pod = dp.netns("inode://4/4026532890");             // or /var/run/netns/pod1, /proc/<pid>/ns/net
//   await node.link.createVeth({ name: "nsm-1", up: true, alias: connId,
//                                peer: { name: "eth1", netns: pod, up: true } });
//   await pod.addr.add("eth1", "169.254.0.2/30");
//   await pod.route.add({ dst: "10.0.0.0/8", gateway: "169.254.0.1", src: "169.254.0.2" });
//   await pod.neigh.replace({ dev: "eth1", ip: "169.254.0.1", mac: "02:00:00:00:00:01" });
//   dp.close();
//
// Every failure is a DataplaneError with .errno/.code naming what failed where (errors.ts).
import { AddrOps } from "./addr.js";
import type { NsContext } from "./context.js";
import { DataplaneError, type OpContext } from "./errors.js";
import { LinkOps, type Link } from "./link.js";
import { NeighOps } from "./neigh.js";
import {
  HOST_NETNS,
  NetnsRefusedError,
  SELF_NETNS,
  checkClientNetnsRef,
  inodeUrlOf,
  openNetnsFile,
  unshareNetnsFile,
  openRtnlSocketIn,
  type NetnsFile,
} from "./netns.js";
import type { RtnlSocket } from "./nl/socket.js";
import { RouteOps } from "./route.js";
import { RuleOps } from "./rule.js";
import { closeSync } from "node:fs";

export { DataplaneError, errnoName, isErrno, type OpContext } from "./errors.js";
export type { KnownLink, LinkRef } from "./context.js";
export type {
  Link,
  LinkChanges,
  VethSpec,
  VxlanSpec,
  BridgeSpec,
  DeleteOptions,
  MoveOptions,
  LinkOps,
} from "./link.js";
export type { VxlanInfo } from "./nl/linkinfo.js";
export type { Address, AddrAddOptions, AddrDelOptions, AddrOps } from "./addr.js";
export type {
  Route,
  RouteSpec,
  RouteListOptions,
  RouteDelOptions,
  RouteScopeName,
  RouteOps,
} from "./route.js";
export { TABLE_MAIN } from "./route.js";
export type { RuleSpec, RuleDelOptions, RuleOps } from "./rule.js";
export type { Neigh, NeighSpec, NeighDelOptions, NeighOps, FdbSpec } from "./neigh.js";
export { writeSysctl } from "./sysctl.js";
export { replaceNftTable, deleteNftTable } from "./nft.js";
export {
  inodeUrlOf,
  listNamespaces,
  resolveInodeUrl,
  netnsPathOf,
  checkClientNetnsRef,
  NetnsRefusedError,
  HOST_NETNS,
  NETNS_RUN_DIR,
  SELF_NETNS,
} from "./netns.js";
export { linkNameProblem, parseCidr, parseIp, MAX_LINK_NAME, type Family } from "./nl/codec.js";
export { ping, type PingNetns, type PingOptions, type PingResult, type IcmpSocketKind } from "./icmp.js";

export interface DataplaneOptions {
  /** Per-request timeout in ms (default 10 000). */
  timeoutMs?: number;
}

/** How far a namespace reference from a caller (a mechanism's inodeURL) is trusted: see Dataplane.clientNetns. */
export interface ClientNetnsOptions {
  /**
   * The reference was produced by this process's own code (e.g. a path for a descriptor it received), so a
   * file:// URL or path is accepted; otherwise only inode://<dev>/<ino>.
   */
  trusted?: boolean;
  /** Let the reference name the host's namespace, this process's own or a `reserved` one (default false). */
  allowHostNetns?: boolean;
  /** More namespaces a caller may not name (e.g. the forwarder's node namespace), as inode:// URLs. */
  reserved?: readonly string[];
}

/**
 * One network namespace: its rtnetlink socket and the operations on it, grouped per object family. The
 * handle holds the namespace open (fd and socket): close it (or the Dataplane) when done, or a namespace
 * deleted with `ip netns del` lives on — with its interfaces — until the process exits.
 */
export class NetnsHandle implements NsContext {
  readonly label: string;
  /** The path the namespace was opened through. */
  readonly path: string;
  readonly inodeUrl: string;
  readonly link: LinkOps;
  readonly addr: AddrOps;
  readonly route: RouteOps;
  readonly rule: RuleOps;
  readonly neigh: NeighOps;
  private sock: RtnlSocket | undefined;
  private isClosed = false;

  /** @internal use Dataplane.netns() */
  constructor(
    private readonly file: NetnsFile,
    private readonly opts: DataplaneOptions,
    private readonly onClose: (h: NetnsHandle) => void,
  ) {
    this.label = file.label;
    this.path = file.path;
    this.inodeUrl = file.inodeUrl;
    this.sock = openRtnlSocketIn(file, opts);
    this.link = new LinkOps(this);
    this.addr = new AddrOps(this);
    this.route = new RouteOps(this);
    this.rule = new RuleOps(this);
    this.neigh = new NeighOps(this);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The namespace fd (for IFLA_NET_NS_FD). */
  get fd(): number {
    if (this.isClosed) throw DataplaneError.of(this.ctx("netns use", this.label), "EBADF");
    return this.file.fd;
  }

  /** The namespace's rtnetlink socket; a socket that failed is replaced by a new one. */
  get rtnl(): RtnlSocket {
    if (this.isClosed) throw DataplaneError.of(this.ctx("netns use", this.label), "EBADF");
    if (!this.sock || this.sock.unusable) {
      this.sock?.close();
      this.sock = openRtnlSocketIn(this.file, this.opts);
    }
    return this.sock;
  }

  ctx(op: string, object: string): OpContext {
    return { op, object, netns: this.label };
  }

  /** Closes the socket and the namespace fd. Further operations fail with EBADF. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.sock?.close();
    this.sock = undefined;
    closeSync(this.file.fd);
    this.onClose(this);
  }
}

/** The data plane of this process: namespace handles, cached by namespace inode. */
export class Dataplane {
  private readonly handles = new Map<string, NetnsHandle>();

  constructor(private readonly opts: DataplaneOptions = {}) {}

  /**
   * A handle for the namespace named by `ref` — a path (/var/run/netns/X, /proc/<pid>/ns/net), a
   * file:// URL or an inode://dev/ino URL; default the calling thread's own namespace. Handles are cached
   * per namespace: asking twice for one namespace (by any name) returns the same handle. Throws ENOENT
   * for a namespace that does not exist, EINVAL for a file that is not a network namespace.
   */
  netns(ref: string = SELF_NETNS): NetnsHandle {
    // An inode URL names the handle's cache key: no /proc scan while the namespace is open already.
    if (ref.startsWith("inode://")) {
      const open = this.handles.get(ref);
      if (open && !open.closed) return open;
    }
    return this.adopt(openNetnsFile(ref));
  }

  /**
   * A new, empty namespace of this process's own (unshare): it lives while the handle is open and goes,
   * with its interfaces, when the handle is closed or the process exits (the TF emulator's per-VN VRFs).
   */
  newNetns(): NetnsHandle {
    return this.adopt(unshareNetnsFile());
  }

  /**
   * A handle for the namespace a caller named (a KERNEL mechanism's inodeURL): like netns(), but only an
   * inode:// URL unless `trusted`, and never the host's namespace, this process's own or a `reserved` one
   * unless `allowHostNetns`. Throws NetnsRefusedError ("invalid" or "denied") before opening anything it
   * refuses, and DataplaneError (ENOENT, EINVAL: not a network namespace) from opening.
   */
  clientNetns(ref: string, opts: ClientNetnsOptions = {}): NetnsHandle {
    const canonical = checkClientNetnsRef(ref, opts.trusted);
    if (canonical.startsWith("inode://")) {
      this.refuseReserved(canonical, ref, opts);
      return this.netns(canonical);
    }
    const file = openNetnsFile(canonical);
    try {
      this.refuseReserved(file.inodeUrl, ref, opts);
    } catch (err) {
      closeSync(file.fd);
      throw err;
    }
    return this.adopt(file);
  }

  private refuseReserved(inodeUrl: string, ref: string, opts: ClientNetnsOptions): void {
    if (opts.allowHostNetns) return;
    const own = (path: string): string | undefined => {
      try {
        return inodeUrlOf(path);
      } catch {
        return undefined; // not visible here: nobody can name it by accident either
      }
    };
    const reserved = [
      [own(HOST_NETNS), "the host's network namespace"],
      [own(SELF_NETNS), "this process's own network namespace"],
      ...(opts.reserved ?? []).map((u) => [u, "a namespace of this component"]),
    ];
    const hit = reserved.find(([u]) => u === inodeUrl);
    if (hit) throw new NetnsRefusedError("denied", `"${ref}" is ${hit[1]}, which callers may not use`);
  }

  /** Caches a newly opened namespace file as a handle (or returns the handle already open for it). */
  private adopt(file: NetnsFile): NetnsHandle {
    const cached = this.handles.get(file.inodeUrl);
    if (cached && !cached.closed) {
      closeSync(file.fd);
      return cached;
    }
    let handle: NetnsHandle;
    try {
      handle = new NetnsHandle(file, this.opts, (h) => {
        if (this.handles.get(h.inodeUrl) === h) this.handles.delete(h.inodeUrl);
      });
    } catch (err) {
      closeSync(file.fd);
      throw err;
    }
    this.handles.set(file.inodeUrl, handle);
    return handle;
  }

  /** The open handles. */
  get open(): NetnsHandle[] {
    return [...this.handles.values()];
  }

  /** Closes every handle. */
  close(): void {
    for (const h of [...this.handles.values()]) h.close();
    this.handles.clear();
  }
}

/**
 * Links in `ns` whose alias starts with `prefix`: the forwarder tags every link it makes with an alias
 * derived from the connection id, so after a restart it can find (and delete) what nobody owns any more.
 */
export function listLinksByAliasPrefix(ns: NetnsHandle, prefix: string): Promise<Link[]> {
  return ns.link.listByAliasPrefix(prefix);
}
