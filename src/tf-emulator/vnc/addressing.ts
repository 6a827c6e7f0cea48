// Address management over the store: which subnets a VN allocates from (its own `network_ipam_refs` attrs,
// or a flat-subnet IPAM's subnets shared by every VN that refers to it), which addresses are taken (derived
// from the instance-ips and floating-ips themselves, so the state file needs no separate bitmap and a delete
// frees its address by construction), and the allocation used by instance-ip and floating-ip creates.
import { badRequest, exhausted, ipInUse } from "./errors.js";
import { pyRepr } from "./pyrepr.js";
import { canonicalIp, formatIp, parseIp, type Family } from "./ip.js";
import { pyList } from "./schema.js";
import type { StoredObject, VncStore } from "./store.js";
import { allocate, contains, isReserved, toSubnet, type Subnet } from "./subnets.js";

export interface VnSubnet {
  subnet: Subnet;
  ipamUuid: string;
  /** The subnet lives on a flat-subnet IPAM and its addresses are shared by all VNs using that IPAM. */
  flat: boolean;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const records = (v: unknown): Record<string, unknown>[] => (Array.isArray(v) ? v.filter(isRecord) : []);

export function vnSubnets(store: VncStore, vn: StoredObject): VnSubnet[] {
  const out: VnSubnet[] = [];
  for (const ref of vn.refs["network-ipam"] ?? []) {
    const own = records(ref.attr?.ipam_subnets);
    if (own.length > 0) {
      for (const e of own) out.push({ subnet: toSubnet(e), ipamUuid: ref.uuid, flat: false });
      continue;
    }
    const ipam = store.record(ref.uuid);
    if (ipam?.props.ipam_subnet_method !== "flat-subnet") continue;
    const ipamSubnets = ipam.props.ipam_subnets;
    for (const e of records(isRecord(ipamSubnets) ? ipamSubnets.subnets : undefined))
      out.push({ subnet: toSubnet(e), ipamUuid: ref.uuid, flat: true });
  }
  return out;
}

/** The VNs whose instance-ips and floating-ips draw from the same address space as `s` of `vn`. */
function sharers(store: VncStore, vn: StoredObject, s: VnSubnet): StoredObject[] {
  if (!s.flat) return [vn];
  return store.referrersOf(s.ipamUuid).filter((o) => o.type === "virtual-network");
}

/** Addresses held by instance-ips referring to `vns` and by floating-ips in the pools under `vns`. */
export function addressesInUse(store: VncStore, vns: readonly StoredObject[]): Set<string> {
  const used = new Set<string>();
  const add = (a: unknown): void => {
    const ip = canonicalIp(a);
    if (ip !== undefined) used.add(ip);
  };
  for (const vn of vns) {
    for (const o of store.referrersOf(vn.uuid)) {
      if (o.type === "instance-ip" && o.refs["virtual-network"]?.[0]?.uuid === vn.uuid)
        add(o.props.instance_ip_address);
    }
    for (const pool of store.childrenOf(vn.uuid)) {
      if (pool.type !== "floating-ip-pool") continue;
      for (const fip of store.childrenOf(pool.uuid))
        if (fip.type === "floating-ip") add(fip.props.floating_ip_address);
    }
  }
  return used;
}

export interface AllocRequest {
  vn: StoredObject;
  /** Allocate only from these subnets (an instance-ip's `subnet_uuid`, a floating-ip-pool's subnet list). */
  subnetUuids?: readonly string[];
  /** A requested address: checked for conflicts instead of allocated. */
  requested?: unknown;
  /** Only subnets of this family (an instance-ip's `instance_ip_family`); any family when absent. */
  family?: Family;
  /** Status of the exhaustion error: 400 for instance-ips, 500 for floating-ips (as the real server). */
  exhaustedStatus?: number;
}

export interface Allocation {
  address: string;
  subnet: Subnet;
  /** The requested address is the subnet's gateway (allowed, but not for a VM's port). */
  isGateway: boolean;
  /** The subnet belongs to a flat-subnet IPAM. */
  flat: boolean;
}

/**
 * The real server's _net_ip_alloc_req: the VN's subnets in order, skipping those of another family (when
 * one is asked for), those not holding the requested address, and exhausted ones. Subnets it tried are
 * named in the exhaustion error, so an address outside every subnet answers "exhausted subnet([])".
 */
export function allocateAddress(store: VncStore, req: AllocRequest): Allocation {
  const { vn } = req;
  let subnets = vnSubnets(store, vn);
  if (req.subnetUuids && req.subnetUuids.length > 0) {
    const wanted = new Set(req.subnetUuids);
    const found = subnets.filter((s) => wanted.has(s.subnet.uuid));
    if (found.length === 0)
      throw badRequest(
        `Virtual-Network(${pyList(vn.fq_name)}) has invalid subnet(${[...wanted].join(", ")})`,
      );
    subnets = found;
  }
  if (req.family) subnets = subnets.filter((s) => s.subnet.family === req.family);

  const requested = req.requested;
  if (requested !== undefined && requested !== null && requested !== "") {
    const ip = parseIp(requested);
    if (!ip) throw badRequest(`failed to detect a valid IP address from ${pyRepr(requested)}`);
    const s = subnets.find((c) => contains(c.subnet, ip));
    if (!s) throw exhausted(vn.fq_name, [], req.exhaustedStatus);
    const address = formatIp(ip);
    const isGateway = ip.value === s.subnet.gateway;
    if (
      addressesInUse(store, sharers(store, vn, s)).has(address) ||
      (isReserved(s.subnet, ip.value) && !isGateway)
    )
      throw ipInUse();
    return { address, subnet: s.subnet, isGateway, flat: s.flat };
  }

  for (const s of subnets) {
    const address = allocate(s.subnet, addressesInUse(store, sharers(store, vn, s)));
    if (address !== undefined) return { address, subnet: s.subnet, isGateway: false, flat: s.flat };
  }
  throw exhausted(
    vn.fq_name,
    subnets.map((s) => s.subnet.cidr),
    req.exhaustedStatus,
  );
}
