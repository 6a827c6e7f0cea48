// An in-memory stand-in for the VNC config API, for unit tests of the tf-vn endpoint without a server. It
// keeps what the endpoint relies on: create answers with ids only (the caller reads back), 409 for a taken
// fq-name, refs resolved to uuids and back-refs computed on read, TF's ref integrity on delete (409 while
// anything still refers to the object), server defaults for a VMI's MAC, and instance-ip allocation per
// family (instance_ip_family, subnet_uuid) downwards from the top of the subnet, as TF allocates.
import {
  canonicalCidr,
  formatIp,
  lastAddr,
  firstAddr,
  tryParseCidr,
  type Cidr,
} from "../../networkservice/ipam/cidr.js";
import { VncError, type VncListQuery, type VncObject } from "./vnc.js";
import type { VnPortsVnc } from "./vnports.js";
import { subnetFamily, vnSubnets, type IpamSubnet } from "./vnview.js";

interface Ref {
  to: string[];
  uuid: string;
  attr?: unknown;
}

interface Stored {
  type: string;
  obj: VncObject;
}

const refKey = (type: string): string => `${type.replace(/-/g, "_")}_refs`;
const typeOfRefKey = (key: string): string => key.slice(0, -"_refs".length).replace(/_/g, "-");
const clone = <T>(v: T): T => structuredClone(v);

export class FakeVnc implements VnPortsVnc {
  private readonly objects = new Map<string, Stored>();
  private next = 1;
  /** Every call as "<op> <type>[ <detail>]", in order. */
  readonly calls: string[] = [];
  /** Consulted before every create: an error returned is thrown instead (fault injection). */
  failCreate: ((type: string, body: Record<string, unknown>) => VncError | undefined) | undefined;

  /** Stores an object as a test's fixture (refs given by `to` are resolved); returns it. */
  seed(type: string, body: Record<string, unknown> & { fq_name: string[] }): VncObject {
    return this.store(type, body);
  }

  /** The stored objects of a type (copies, without back-refs). */
  all(type: string): VncObject[] {
    return [...this.objects.values()].filter((s) => s.type === type).map((s) => clone(s.obj));
  }

  async createOrRead(
    type: string,
    body: Record<string, unknown> & { fq_name: string[] },
  ): Promise<{ obj: VncObject; created: boolean }> {
    this.calls.push(`create ${type} ${body.fq_name.join(":")}`);
    const injected = this.failCreate?.(type, body);
    if (injected) throw injected;
    const existing = this.find(type, body.fq_name);
    if (existing) return { obj: this.view(existing), created: false };
    if (type === "instance-ip" && body["instance_ip_address"] === undefined) await this.allocate(body);
    const obj = this.store(type, body);
    // As TF: the create answer carries the ids, not the server's defaults.
    return { obj: { uuid: obj.uuid, fq_name: obj.fq_name, href: `fake/${type}/${obj.uuid}` }, created: true };
  }

  read(type: string, uuid: string): Promise<VncObject> {
    this.calls.push(`read ${type}`);
    const s = this.objects.get(uuid);
    if (!s || s.type !== type) return Promise.reject(notFound("GET", `/${type}/${uuid}`, uuid));
    return Promise.resolve(this.view(s));
  }

  async tryRead(type: string, uuid: string): Promise<VncObject | undefined> {
    try {
      return await this.read(type, uuid);
    } catch (err) {
      if (err instanceof VncError && err.status === 404) return undefined;
      throw err;
    }
  }

  async readByFqName(type: string, fqName: string[]): Promise<VncObject> {
    return this.read(type, await this.fqNameToId(type, fqName));
  }

  fqNameToId(type: string, fqName: string[]): Promise<string> {
    const s = this.find(type, fqName);
    if (!s)
      return Promise.reject(
        new VncError("POST", "/fqname-to-id", 404, `Name ${JSON.stringify(fqName)} not found`),
      );
    return Promise.resolve(s.obj.uuid);
  }

  list(type: string, query: VncListQuery = {}): Promise<VncObject[]> {
    this.calls.push(`list ${type}`);
    const wantFq = query.fq_names?.map((f) => f.join(":"));
    const out = [...this.objects.values()]
      .filter((s) => s.type === type)
      .filter((s) => !wantFq || wantFq.includes(s.obj.fq_name.join(":")))
      .filter((s) => !query.obj_uuids || query.obj_uuids.includes(s.obj.uuid))
      .map((s) => (query.detail ? this.view(s) : { uuid: s.obj.uuid, fq_name: clone(s.obj.fq_name) }));
    return Promise.resolve(out);
  }

  refUpdate(
    type: string,
    uuid: string,
    refType: string,
    refUuid: string,
    operation: "ADD" | "DELETE",
  ): Promise<void> {
    this.calls.push(`ref-${operation.toLowerCase()} ${type} ${refType}`);
    const s = this.objects.get(uuid);
    const target = this.objects.get(refUuid);
    if (!s || s.type !== type) return Promise.reject(notFound("POST", "/ref-update", uuid));
    const key = refKey(refType);
    const refs = ((s.obj[key] as Ref[] | undefined) ?? []).filter((r) => r.uuid !== refUuid);
    if (operation === "ADD") {
      if (!target || target.type !== refType) return Promise.reject(notFound("POST", "/ref-update", refUuid));
      refs.push({ to: clone(target.obj.fq_name), uuid: refUuid, attr: null });
    }
    s.obj[key] = refs;
    return Promise.resolve();
  }

  deleteIfExists(type: string, uuid: string): Promise<boolean> {
    this.calls.push(`delete ${type}`);
    const s = this.objects.get(uuid);
    if (!s || s.type !== type) return Promise.resolve(false);
    const holders = [...this.objects.values()].filter(
      (o) => o !== s && refsIn(o.obj).some((r) => r.uuid === uuid),
    );
    if (holders.length > 0) {
      const by = holders.map((h) => `${h.type}:${h.obj.uuid}`).join(", ");
      return Promise.reject(
        new VncError("DELETE", `/${type}/${uuid}`, 409, `Delete when resource still referred: [${by}]`),
      );
    }
    this.objects.delete(uuid);
    return Promise.resolve(true);
  }

  // ------------------------------------------------------------------ internals

  private find(type: string, fq: string[]): Stored | undefined {
    const name = fq.join(":");
    return [...this.objects.values()].find((s) => s.type === type && s.obj.fq_name.join(":") === name);
  }

  private store(type: string, body: Record<string, unknown> & { fq_name: string[] }): VncObject {
    if (this.find(type, body.fq_name))
      throw new VncError("POST", `/${type}s`, 409, `${JSON.stringify(body.fq_name)} already exists`);
    const uuid = `00000000-0000-4000-8000-${(this.next++).toString(16).padStart(12, "0")}`;
    const obj: VncObject = { ...clone(body), uuid, fq_name: clone(body.fq_name) };
    for (const key of Object.keys(obj).filter((k) => k.endsWith("_refs"))) {
      obj[key] = (obj[key] as { to: string[]; uuid?: string; attr?: unknown }[]).map((r) => {
        const target = r.uuid ? this.objects.get(r.uuid) : this.find(typeOfRefKey(key), r.to);
        if (!target) throw new VncError("POST", `/${type}s`, 404, `${key} ${r.to.join(":")} does not exist`);
        return { to: clone(target.obj.fq_name), uuid: target.obj.uuid, attr: r.attr ?? null };
      });
    }
    if (
      type === "virtual-machine-interface" &&
      obj["virtual_machine_interface_mac_addresses"] === undefined
    ) {
      const h = uuid.replace(/-/g, "");
      obj["virtual_machine_interface_mac_addresses"] = {
        mac_address: [`02:${h.slice(-10).match(/../g)!.join(":")}`],
      };
    }
    this.objects.set(uuid, { type, obj });
    return obj;
  }

  /** The object as a read answers it: a copy with `<type>_back_refs` of everything referring to it. */
  private view(s: Stored): VncObject {
    const out = clone(s.obj);
    for (const o of this.objects.values()) {
      for (const r of refsIn(o.obj)) {
        if (r.uuid !== s.obj.uuid) continue;
        const key = `${o.type.replace(/-/g, "_")}_back_refs`;
        const list = (out[key] as Ref[] | undefined) ?? [];
        if (!list.some((x) => x.uuid === o.obj.uuid))
          list.push({ to: clone(o.obj.fq_name), uuid: o.obj.uuid, attr: r.attr ?? null });
        out[key] = list;
      }
    }
    return out;
  }

  /** TF's allocation: the asked-for subnet, else the first of the family; top-down below gateway and DNS. */
  private async allocate(body: Record<string, unknown>): Promise<void> {
    const family = body["instance_ip_family"] === "v6" ? "v6" : "v4";
    const vnRef = (body["virtual_network_refs"] as { to: string[] }[] | undefined)?.[0];
    const vn = vnRef ? this.find("virtual-network", vnRef.to) : undefined;
    if (!vn) throw new VncError("POST", "/instance-ips", 400, "instance-ip needs virtual_network_refs");
    const subnets = await vnSubnets(this, this.view(vn));
    const askedUuid = typeof body["subnet_uuid"] === "string" ? body["subnet_uuid"] : undefined;
    const sn = askedUuid
      ? subnets.find((x) => x.subnet_uuid === askedUuid)
      : subnets.find((x) => subnetFamily(x) === family);
    if (!sn || subnetFamily(sn) !== family)
      throw new VncError("POST", "/instance-ips", 400, `no ${family} subnet ${askedUuid ?? "in the VN"}`);
    const cidr = cidrOf(sn);
    const used = new Set(
      this.all("instance-ip")
        .map((i) => i["instance_ip_address"])
        .filter((a): a is string => typeof a === "string"),
    );
    // Below the gateway (last-1) and the DNS address (last-2), as the server defaults them.
    for (let v = lastAddr(cidr) - 3n; v > firstAddr(cidr); v--) {
      const ip = formatIp({ family: cidr.family, value: v });
      if (!used.has(ip)) {
        body["instance_ip_address"] = ip;
        body["subnet_uuid"] = sn.subnet_uuid;
        return;
      }
    }
    throw new VncError(
      "POST",
      "/instance-ips",
      409,
      `Virtual-Network(${vn.obj.fq_name.join(":")}) has exhausted subnet(${canonicalCidr(`${sn.subnet?.ip_prefix}/${sn.subnet?.ip_prefix_len}`)})`,
    );
  }
}

function refsIn(o: VncObject): Ref[] {
  return Object.keys(o)
    .filter((k) => k.endsWith("_refs"))
    .flatMap((k) => (Array.isArray(o[k]) ? (o[k] as Ref[]) : []));
}

function cidrOf(sn: IpamSubnet): Cidr {
  const c = tryParseCidr(`${sn.subnet?.ip_prefix ?? ""}/${sn.subnet?.ip_prefix_len ?? ""}`);
  if (!c) throw new Error(`fake VNC: subnet ${JSON.stringify(sn.subnet)} is not a prefix`);
  return c;
}

function notFound(method: string, path: string, uuid: string): VncError {
  return new VncError(method, path, 404, `ID ${uuid} does not exist`);
}

/** A TF ipam subnet for fixtures: gateway last-1 and DNS last-2 as the server would default them. */
export function ipamSubnet(prefix: string, subnetUuid: string, hostRoutes: string[] = []): IpamSubnet {
  const c = tryParseCidr(prefix);
  if (!c) throw new Error(`fake VNC: "${prefix}" is not a prefix`);
  const ip = (v: bigint): string => formatIp({ family: c.family, value: v });
  return {
    subnet: { ip_prefix: ip(firstAddr(c)), ip_prefix_len: c.bits },
    subnet_uuid: subnetUuid,
    default_gateway: ip(lastAddr(c) - 1n),
    dns_server_address: ip(lastAddr(c) - 2n),
    ...(hostRoutes.length > 0 ? { host_routes: { route: hostRoutes.map((p) => ({ prefix: p })) } } : {}),
  };
}

export interface FakeVnOptions {
  subnets: IpamSubnet[];
  /** Subnets on a flat-subnet IPAM (kube-manager's style) instead of on the VN's ref. */
  flat?: boolean;
  fabricSnat?: boolean;
  /** A public network (`router_external`): the gateway routes it in both families. */
  routerExternal?: boolean;
}

/** Seeds a VN (with its IPAM) in project default-domain:k8s-default; returns the VN's fq-name. */
export function seedVn(vnc: FakeVnc, name: string, opts: FakeVnOptions): string[] {
  const project = ["default-domain", "k8s-default"];
  if (!vnc.all("project").some((p) => p.fq_name.join(":") === project.join(":")))
    vnc.seed("project", { fq_name: project });
  const ipamFq = [...project, `${name}-ipam`];
  vnc.seed("network-ipam", {
    fq_name: ipamFq,
    ...(opts.flat ? { ipam_subnet_method: "flat-subnet", ipam_subnets: { subnets: opts.subnets } } : {}),
  });
  const fq = [...project, name];
  vnc.seed("virtual-network", {
    fq_name: fq,
    network_ipam_refs: [{ to: ipamFq, attr: { ipam_subnets: opts.flat ? [] : opts.subnets } }],
    ...(opts.fabricSnat ? { fabric_snat: true } : {}),
    ...(opts.routerExternal ? { router_external: true } : {}),
  });
  return fq;
}

/** Seeds the virtual-router of a compute. */
export function seedVrouter(vnc: FakeVnc, hostname: string): void {
  vnc.seed("virtual-router", {
    fq_name: ["default-global-system-config", hostname],
    virtual_router_ip_address: "198.18.0.11",
  });
}
