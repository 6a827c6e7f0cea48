// Type-specific server behaviour (the real server's `resources/*.py` pre/post hooks), for the types whose
// defaults and checks clients depend on: virtual-network (network id, route target, subnet defaults, its
// routing-instance), network-ipam (flat subnets), virtual-machine-interface (VN ref, MAC, routing-instance
// ref), instance-ip and floating-ip (address allocation). Every other type is plain CRUD.
import { allocateAddress, addressesInUse, vnSubnets } from "./addressing.js";
import { badRequest, conflict, VncHttpError } from "./errors.js";
import { ipFabricFqName, linkLocalFqName, sameFqName } from "./schema.js";
import type { StoredObject, StoredRef, VncStore } from "./store.js";
import { ipNetworkRepr, parseIp, type Family } from "./ip.js";
import {
  checkIpamSubnet,
  contains,
  normalizeIpamSubnet,
  overlaps,
  toSubnet,
  type Subnet,
} from "./subnets.js";

export interface HookContext {
  store: VncStore;
  /** Creates an object through the whole create path (used for default children). */
  create(type: string, body: Record<string, unknown>, opts?: { auto?: boolean }): StoredObject;
  /** Adds or replaces one ref of a stored object, as `/ref-update` ADD does. */
  addRef(obj: StoredObject, refType: string, refUuid: string, attr: Record<string, unknown> | null): void;
}

export interface TypeHooks {
  /** Fills server defaults and checks type rules; may change `obj.props` and `obj.refs`. Throws to refuse. */
  beforeCreate?(ctx: HookContext, obj: StoredObject): void;
  /** Runs once the object is stored (default children, derived refs). */
  afterCreate?(ctx: HookContext, obj: StoredObject): void;
  /** `next` is `prev` with the PUT body applied; `given` is the PUT body. */
  beforeUpdate?(
    ctx: HookContext,
    prev: StoredObject,
    next: StoredObject,
    given: Record<string, unknown>,
  ): void;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** First 8000000 route-target numbers are the user's; auto route targets start above (schema transformer). */
const autoRouteTargetBase = 8_000_000;
export const vnIdCounter = "virtual_network_network_id";

// ---------------------------------------------------------------- virtual-network

/**
 * Checks and fills each ipam subnet of a VN, in the real server's order: every subnet's own check
 * (net_check_subnet, 409), then overlaps between the VN's subnets (400; other VNs may overlap), then the
 * defaults. `prevVn` lets an update keep subnet uuids and addresses by prefix.
 */
function normalizeVnSubnets(ctx: HookContext, vn: StoredObject, prevVn?: StoredObject): void {
  const prevByCidr = new Map<string, Record<string, unknown>>();
  for (const ref of prevVn?.refs["network-ipam"] ?? [])
    for (const e of Array.isArray(ref.attr?.ipam_subnets) ? ref.attr.ipam_subnets : [])
      if (isRecord(e)) prevByCidr.set(toSubnet(e).cidr, e);

  const entriesOf = (attr: Record<string, unknown> | null): Record<string, unknown>[] =>
    (Array.isArray(attr?.ipam_subnets) ? attr.ipam_subnets : []).filter(isRecord);
  const seen: Subnet[] = [];
  for (const ref of vn.refs["network-ipam"] ?? []) for (const e of entriesOf(ref.attr)) checkIpamSubnet(e);
  for (const ref of vn.refs["network-ipam"] ?? [])
    for (const e of entriesOf(ref.attr)) {
      const s = toSubnet(e);
      const overlap = seen.find((o) => overlaps(o, s));
      if (overlap)
        throw badRequest(`Overlapping addresses: [${ipNetworkRepr(overlap.cidr)}, ${ipNetworkRepr(s.cidr)}]`);
      seen.push(s);
    }
  for (const ref of vn.refs["network-ipam"] ?? []) {
    if (!ref.attr || !Array.isArray(ref.attr.ipam_subnets)) continue;
    ref.attr = {
      ...ref.attr,
      ipam_subnets: entriesOf(ref.attr).map((e) => normalizeIpamSubnet(e, prevByCidr.get(toSubnet(e).cidr))),
    };
  }

  if (prevVn) {
    // A subnet may only go away when none of its addresses is held.
    const kept = new Set(seen.map((s) => s.cidr));
    const used = [...addressesInUse(ctx.store, [prevVn])].flatMap((a) => parseIp(a) ?? []);
    for (const s of vnSubnets(ctx.store, prevVn)) {
      if (s.flat || kept.has(s.subnet.cidr)) continue;
      if (used.some((ip) => contains(s.subnet, ip))) throw conflict("Cannot Delete IP Block, IP(s) in use");
    }
  }
}

function routeTargetAsn(store: VncStore): number {
  const gsc = store.recordByFqName("global-system-config", ["default-global-system-config"]);
  const asn = gsc?.props.autonomous_system;
  return typeof asn === "number" ? asn : 64512;
}

const virtualNetwork: TypeHooks = {
  beforeCreate(ctx, vn) {
    if (vn.props.virtual_network_network_id !== undefined)
      throw new VncHttpError(403, "Cannot set the virtual network ID");
    normalizeVnSubnets(ctx, vn);
    const id = ctx.store.nextCounter(vnIdCounter);
    vn.props.virtual_network_network_id = id;
  },
  afterCreate(ctx, vn) {
    // What the schema transformer adds a moment later in real TF: the VN's own VRF (the fabric's is the
    // well-known `...:ip-fabric:__default__`) and its auto route target, a `route-target` object the VRF
    // refers to. The VN's route_target_list stays the user's.
    const name = sameFqName(vn.fq_name, ipFabricFqName) ? "__default__" : vn.fq_name.at(-1)!;
    const ri = ctx.create(
      "routing-instance",
      { fq_name: [...vn.fq_name, name], parent_type: "virtual-network", routing_instance_is_default: true },
      { auto: true },
    );
    const id = Number(vn.props.virtual_network_network_id);
    const rtName = `target:${routeTargetAsn(ctx.store)}:${autoRouteTargetBase + id}`;
    const rt =
      ctx.store.recordByFqName("route-target", [rtName]) ??
      ctx.create("route-target", { fq_name: [rtName] }, { auto: true });
    ctx.addRef(ri, "route-target", rt.uuid, { import_export: null });
  },
  beforeUpdate(ctx, prev, next, given) {
    if (
      given.virtual_network_network_id !== undefined &&
      given.virtual_network_network_id !== prev.props.virtual_network_network_id
    )
      throw new VncHttpError(403, "Cannot update the virtual network ID");
    next.props.virtual_network_network_id = prev.props.virtual_network_network_id;
    if ("network_ipam_refs" in given) normalizeVnSubnets(ctx, next, prev);
  },
};

// ---------------------------------------------------------------- network-ipam

function normalizeIpamSubnets(ipam: StoredObject, prev?: StoredObject): void {
  const subnets = ipam.props.ipam_subnets;
  if (!isRecord(subnets) || !Array.isArray(subnets.subnets)) return;
  const entries = subnets.subnets.filter(isRecord);
  const prevSubnets = isRecord(prev?.props.ipam_subnets) ? prev.props.ipam_subnets.subnets : undefined;
  const prevByCidr = new Map<string, Record<string, unknown>>();
  for (const e of Array.isArray(prevSubnets) ? prevSubnets : [])
    if (isRecord(e)) prevByCidr.set(toSubnet(e).cidr, e);
  // Overlap first (400), then each subnet's own check (409), as network_ipam.py does.
  const seen: Subnet[] = [];
  for (const e of entries) {
    const s = toSubnet(e);
    const overlap = seen.find((o) => overlaps(o, s));
    if (overlap)
      throw badRequest(`Overlapping addresses: [${ipNetworkRepr(overlap.cidr)}, ${ipNetworkRepr(s.cidr)}]`);
    seen.push(s);
  }
  for (const e of entries) checkIpamSubnet(e);
  ipam.props.ipam_subnets = {
    ...subnets,
    subnets: entries.map((e) => normalizeIpamSubnet(e, prevByCidr.get(toSubnet(e).cidr))),
  };
}

const networkIpam: TypeHooks = {
  beforeCreate: (_ctx, ipam) => normalizeIpamSubnets(ipam),
  beforeUpdate: (_ctx, prev, next) => normalizeIpamSubnets(next, prev),
};

// ---------------------------------------------------------------- virtual-machine-interface

const vmiNeedsVn = "Virtual Machine Interface must have valide Virtual Network reference";

/** `02:` + uuid[0:2],[2:4],[4:6],[6:8],[9:11], as vnc_addr_mgmt.mac_alloc does. */
export const macFromUuid = (u: string): string =>
  `02:${u.slice(0, 2)}:${u.slice(2, 4)}:${u.slice(4, 6)}:${u.slice(6, 8)}:${u.slice(9, 11)}`;

const virtualMachineInterface: TypeHooks = {
  beforeCreate(_ctx, vmi) {
    if ((vmi.refs["virtual-network"] ?? []).length === 0) throw badRequest(vmiNeedsVn);
    const macs = vmi.props.virtual_machine_interface_mac_addresses;
    const given = isRecord(macs) && Array.isArray(macs.mac_address) ? macs.mac_address : [];
    vmi.props.virtual_machine_interface_mac_addresses = {
      mac_address:
        given.length > 0 ? given.map((m) => String(m).replace(/-/g, ":")) : [macFromUuid(vmi.uuid)],
    };
  },
  afterCreate(ctx, vmi) {
    // The port joins its VN's VRF (the real server adds this ref in post_dbe_create).
    const vn = ctx.store.record(vmi.refs["virtual-network"]![0]!.uuid)!;
    const ri = ctx.store.recordByFqName("routing-instance", [...vn.fq_name, vn.fq_name.at(-1)!]);
    if (!ri) return;
    ctx.addRef(vmi, "routing-instance", ri.uuid, {
      direction: "both",
      vlan_tag: null,
      src_mac: null,
      dst_mac: null,
      mpls_label: null,
      service_chain_address: null,
      ipv6_service_chain_address: null,
      protocol: null,
    });
  },
  beforeUpdate(_ctx, _prev, next, given) {
    if ("virtual_network_refs" in given && (next.refs["virtual-network"] ?? []).length === 0)
      throw badRequest(vmiNeedsVn);
  },
};

// ---------------------------------------------------------------- instance-ip

const isWellKnownVn = (vn: StoredObject): boolean =>
  sameFqName(vn.fq_name, ipFabricFqName) || sameFqName(vn.fq_name, linkLocalFqName);

function portOfVm(store: VncStore, iip: StoredObject): boolean {
  return (iip.refs["virtual-machine-interface"] ?? []).some(
    (r) => (store.record(r.uuid)?.refs["virtual-machine"] ?? []).length > 0,
  );
}

const familyOf: Readonly<Record<string, Family>> = { v4: 4, v6: 6 };

const instanceIp: TypeHooks = {
  beforeCreate(ctx, iip) {
    const vnRef = iip.refs["virtual-network"]?.[0];
    if (!vnRef)
      throw badRequest(
        "Instance IP needs virtual_network_refs: the TF emulator allocates instance-ips from a virtual network only (network_ipam_refs and virtual_router_refs allocation is not emulated)",
      );
    const vn = ctx.store.record(vnRef.uuid)!;
    if (isWellKnownVn(vn)) return; // the real server does not allocate on ip-fabric / link-local
    const subnetUuid = iip.props.subnet_uuid;
    const a = allocateAddress(ctx.store, {
      vn,
      subnetUuids: typeof subnetUuid === "string" && subnetUuid !== "" ? [subnetUuid] : undefined,
      requested: iip.props.instance_ip_address,
      // No family given: the VN's subnets in order, whatever their family (ip_alloc_req).
      family: familyOf[String(iip.props.instance_ip_family)],
    });
    if (a.isGateway && portOfVm(ctx.store, iip)) throw badRequest("Gateway IP cannot be used by VM port");
    iip.props.instance_ip_address = a.address;
    iip.props.subnet_uuid = a.subnet.uuid;
    // The real server records the subnet only for flat-subnet (IPAM) allocations.
    if (a.flat) {
      const [prefix, len] = a.subnet.cidr.split("/");
      iip.props.instance_ip_subnet = { ip_prefix: prefix, ip_prefix_len: Number(len) };
    }
  },
  beforeUpdate(_ctx, prev, next, given) {
    if (
      given.instance_ip_address !== undefined &&
      prev.props.instance_ip_address !== undefined &&
      given.instance_ip_address !== prev.props.instance_ip_address
    )
      throw badRequest("Instance IP Address can not be changed");
    if (prev.props.instance_ip_address !== undefined)
      next.props.instance_ip_address = prev.props.instance_ip_address;
  },
};

// ---------------------------------------------------------------- floating-ip

const floatingIp: TypeHooks = {
  beforeCreate(ctx, fip) {
    if (fip.parent_type !== "floating-ip-pool") return;
    if ((fip.refs.project ?? []).length === 0) {
      const project = ctx.store.recordByFqName("project", fip.fq_name.slice(0, 2));
      if (project) fip.refs.project = [{ uuid: project.uuid, attr: null }];
    }
    const pool = ctx.store.record(fip.parent_uuid!)!;
    const vn = ctx.store.record(pool.parent_uuid!)!;
    const poolSubnets = pool.props.floating_ip_pool_subnets;
    const subnetUuids =
      isRecord(poolSubnets) && Array.isArray(poolSubnets.subnet_uuid)
        ? poolSubnets.subnet_uuid.map(String)
        : undefined;
    const a = allocateAddress(ctx.store, {
      vn,
      subnetUuids,
      requested: fip.props.floating_ip_address,
      exhaustedStatus: 500,
    });
    fip.props.floating_ip_address = a.address;
  },
  beforeUpdate(_ctx, prev, next, given) {
    if (
      given.floating_ip_address !== undefined &&
      prev.props.floating_ip_address !== undefined &&
      given.floating_ip_address !== prev.props.floating_ip_address
    )
      throw badRequest("Floating IP Address can not be changed");
    if (prev.props.floating_ip_address !== undefined)
      next.props.floating_ip_address = prev.props.floating_ip_address;
  },
};

// ---------------------------------------------------------------- logical-router

/** logical_router.py: a port of a VM cannot be a router interface (409; the text names the port's parent). */
function portsFreeOfVms(store: VncStore, lr: StoredObject): void {
  for (const r of lr.refs["virtual-machine-interface"] ?? []) {
    const vmi = store.record(r.uuid);
    if (vmi && (vmi.parent_type === "virtual-machine" || (vmi.refs["virtual-machine"] ?? []).length > 0))
      throw conflict(`Port(${vmi.uuid}) already in use by virtual-machine(${String(vmi.parent_uuid)})`);
  }
}

/** logical_router.py: the gateway VN must not be the VN of a router interface (400, TF's spacing). */
function gatewayNotOnInterfaceVn(
  store: VncStore,
  vmiRefs: readonly StoredRef[],
  vnRefs: readonly StoredRef[],
): void {
  const interfaceVns = new Set<string>();
  for (const r of vmiRefs) {
    const vn = store.record(r.uuid)?.refs["virtual-network"]?.[0];
    if (vn) interfaceVns.add(vn.uuid);
    for (const g of vnRefs)
      if (interfaceVns.has(g.uuid))
        throw badRequest(`Logical router interface and gateway cannot be inVN(${g.uuid})`);
  }
}

const logicalRouter: TypeHooks = {
  beforeCreate(ctx, lr) {
    gatewayNotOnInterfaceVn(
      ctx.store,
      lr.refs["virtual-machine-interface"] ?? [],
      lr.refs["virtual-network"] ?? [],
    );
    portsFreeOfVms(ctx.store, lr);
  },
  beforeUpdate(ctx, prev, next, given) {
    // As on create, but each changed ref list is checked against the stored other one.
    if ("virtual_network_refs" in given)
      gatewayNotOnInterfaceVn(
        ctx.store,
        prev.refs["virtual-machine-interface"] ?? [],
        next.refs["virtual-network"] ?? [],
      );
    if ("virtual_machine_interface_refs" in given) {
      gatewayNotOnInterfaceVn(
        ctx.store,
        next.refs["virtual-machine-interface"] ?? [],
        prev.refs["virtual-network"] ?? [],
      );
      portsFreeOfVms(ctx.store, next);
    }
  },
};

// ---------------------------------------------------------------- project

const defaultAps = "default-application-policy-set";

const project: TypeHooks = {
  afterCreate(ctx, proj) {
    // project.py: every project gets a default application-policy-set child, referred to by the project.
    const aps = ctx.create(
      "application-policy-set",
      {
        fq_name: [...proj.fq_name, defaultAps],
        parent_type: "project",
        display_name: defaultAps,
        all_applications: true,
      },
      { auto: true },
    );
    ctx.addRef(proj, "application-policy-set", aps.uuid, null);
  },
};

export const typeHooks: Readonly<Record<string, TypeHooks>> = {
  project,
  "logical-router": logicalRouter,
  "virtual-network": virtualNetwork,
  "network-ipam": networkIpam,
  "virtual-machine-interface": virtualMachineInterface,
  "instance-ip": instanceIp,
  "floating-ip": floatingIp,
};
