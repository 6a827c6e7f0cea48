// The TF virtual-network endpoint's work against the VNC config API, in kube-manager's order (spec §5): per
// connection a virtual-machine, a virtual-machine-interface (annotated index/network/interface), an
// instance-ip per address family the VN has a subnet of (v4, v6 or both), optionally a floating-ip, and the
// virtual-router → virtual-machine ref that makes the control node push the config to the compute. Names
// derive from the connection id, so every create is idempotent (409 → read) and a restarted endpoint finds
// the objects of a connection again. Removal runs in TF's order (VR ref, FIP, the IIPs, VMI, VM) and
// tolerates objects already gone; a failed create removes what it made.
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { StatusError } from "../../core/errors.js";
import { canonicalCidr } from "../../networkservice/ipam/cidr.js";
import { VncError, type VncClient, type VncObject } from "./vnc.js";
import { iipNameOf, textOf, vmNameOf } from "./keys.js";
import { refsOf, subnetFamily, vnHasSnat, vnSubnets, type IpamSubnet } from "./vnview.js";

/** The VNC calls the endpoint makes: a VncClient, or a stand-in in tests. */
export type VnPortsVnc = Pick<
  VncClient,
  | "list"
  | "createOrRead"
  | "read"
  | "tryRead"
  | "readByFqName"
  | "fqNameToId"
  | "refUpdate"
  | "deleteIfExists"
>;

export type TfFamily = "v4" | "v6";

/** The port's address of one family: TF's instance-ip and what its subnet says. */
export interface TfAddress {
  family: TfFamily;
  iipUuid: string;
  ip: string;
  plen: number;
  gateway: string;
  dns: string;
  /** Prefixes of this family the client routes through this family's gateway. */
  routes: string[];
}

export interface TfPort {
  connId: string;
  vmName: string;
  vmUuid: string;
  vmiUuid: string;
  vnUuid: string;
  vnName: string;
  /** One per family the VN has a subnet of, IPv4 first. */
  addrs: TfAddress[];
  mac: string;
  fipUuid?: string;
  floatingIp?: string;
  vrUuid: string;
}

const defaultPrefix: Record<TfFamily, string> = { v4: "0.0.0.0/0", v6: "::/0" };

export interface VnPortsOptions {
  /** This node's virtual-router name (the compute's hostname). */
  vrouter: string;
  /** Default route through the VN gateway: when the VN has external access (auto), always, or never. */
  defaultRoute?: "auto" | "always" | "never";
}

export class VnPorts {
  constructor(
    private readonly vnc: VnPortsVnc,
    private readonly opts: VnPortsOptions,
    private readonly log: Logger,
  ) {}

  async create(
    connId: string,
    vnFq: string[],
    ifname: string | undefined,
    fipPool?: string[],
  ): Promise<TfPort> {
    const vmName = vmNameOf(connId);
    const made: (() => Promise<unknown>)[] = [];
    const vn = await this.readOr(
      "virtual-network",
      vnFq,
      () => new StatusError(status.NOT_FOUND, `TF virtual network ${vnFq.join(":")} does not exist`),
    );
    const subnets = await vnSubnets(this.vnc, vn);
    // One instance-ip per family the VN has a subnet of (the first of each), as TF gives a dual-stack port.
    const wanted = (["v4", "v6"] as const).flatMap((family) => {
      const sn = subnets.find((x) => subnetFamily(x) === family && x.subnet_uuid && x.subnet?.ip_prefix);
      return sn ? [{ family, sn }] : [];
    });
    if (wanted.length === 0) {
      throw new StatusError(
        status.FAILED_PRECONDITION,
        `TF virtual network ${vnFq.join(":")} has no IPAM subnet (IPv4 or IPv6) with an ip_prefix and subnet_uuid`,
      );
    }
    const vr = await this.readOr(
      "virtual-router",
      ["default-global-system-config", this.opts.vrouter],
      () =>
        new StatusError(
          status.FAILED_PRECONDITION,
          `TF virtual-router default-global-system-config:${this.opts.vrouter} does not exist: is --node-name this compute's hostname?`,
        ),
    );
    const project = vnFq.slice(0, -1);
    try {
      const vm = await this.make(
        made,
        "virtual-machine",
        {
          fq_name: [vmName],
          server_type: "container",
          annotations: kv({ kind: "nsm-connection", "nsm-connection": connId }),
        },
        false,
      );
      const vmi = await this.make(made, "virtual-machine-interface", {
        fq_name: [...project, vmName],
        parent_type: "project",
        virtual_network_refs: [{ to: vnFq }],
        virtual_machine_refs: [{ to: [vmName] }],
        annotations: kv({
          index: "0/1",
          network: vnFq[vnFq.length - 1]!,
          ...(ifname ? { interface: ifname } : {}),
          "nsm-connection": connId,
        }),
      });
      const iips: { family: TfFamily; sn: IpamSubnet; iip: VncObject }[] = [];
      for (const { family, sn } of wanted) {
        // The server picks the address (top-down) and the subnet; the read-back (make) has both.
        const iip = await this.make(made, "instance-ip", {
          fq_name: [iipNameOf(connId, family)],
          subnet_uuid: sn.subnet_uuid,
          instance_ip_family: family,
          virtual_network_refs: [{ to: vnFq }],
          virtual_machine_interface_refs: [{ to: [...project, vmName] }],
        });
        if (!textOf(iip["instance_ip_address"])) {
          throw new StatusError(
            status.INTERNAL,
            `TF instance-ip ${iip.uuid} (${family}) has no instance_ip_address after creation`,
          );
        }
        this.log.debug(
          { connId, family, iip: iip.uuid, ip: iip["instance_ip_address"], subnet: iip["subnet_uuid"] },
          "TF instance-ip of the connection",
        );
        iips.push({ family, sn, iip });
      }
      let fip: VncObject | undefined;
      if (fipPool) {
        fip = await this.make(made, "floating-ip", {
          fq_name: [...fipPool, vmName],
          parent_type: "floating-ip-pool",
          virtual_machine_interface_refs: [{ to: [...project, vmName] }],
          project_refs: [{ to: project }],
        });
      }
      await this.vnc.refUpdate("virtual-router", vr.uuid, "virtual-machine", vm.uuid, "ADD");
      made.push(() => this.vnc.refUpdate("virtual-router", vr.uuid, "virtual-machine", vm.uuid, "DELETE"));
      const mac =
        (vmi["virtual_machine_interface_mac_addresses"] as { mac_address?: string[] } | undefined)
          ?.mac_address?.[0] ?? "";
      const external = await this.external(vn, fip !== undefined);
      const addrs = iips.map(({ family, sn, iip }): TfAddress => {
        const used = subnets.find((x) => x.subnet_uuid === iip["subnet_uuid"]) ?? sn;
        return {
          family,
          iipUuid: iip.uuid,
          ip: textOf(iip["instance_ip_address"]),
          plen: used.subnet?.ip_prefix_len ?? (family === "v4" ? 32 : 128),
          gateway: used.default_gateway ?? "",
          dns: used.dns_server_address ?? "",
          routes: routesOf(used, family, external.has(family)),
        };
      });
      return {
        connId,
        vmName,
        vmUuid: vm.uuid,
        vmiUuid: vmi.uuid,
        vnUuid: vn.uuid,
        vnName: vnFq.join(":"),
        addrs,
        mac,
        ...(fip ? { fipUuid: fip.uuid, floatingIp: textOf(fip["floating_ip_address"]) } : {}),
        vrUuid: vr.uuid,
      };
    } catch (err) {
      for (const undo of made.reverse()) await undo().catch(() => undefined);
      throw toStatus(err, `creating the TF port of connection ${connId}`);
    }
  }

  /**
   * Removes a connection's objects in TF's order, found from its VM (so a changed mapping or a restart does
   * not matter); objects already gone are fine. Throws if TF is unreachable.
   */
  async remove(connId: string, known?: TfPort): Promise<void> {
    const vmName = vmNameOf(connId);
    const vmUuid = known?.vmUuid ?? (await this.idOf("virtual-machine", [vmName]));
    if (!vmUuid) return;
    const vm = await this.vnc.tryRead("virtual-machine", vmUuid);
    if (!vm) return;
    for (const r of refsOf(vm, "virtual_router_back_refs")) {
      await this.vnc
        .refUpdate("virtual-router", r.uuid, "virtual-machine", vmUuid, "DELETE")
        .catch(ignore404);
    }
    for (const v of refsOf(vm, "virtual_machine_interface_back_refs")) {
      const vmi = await this.vnc.tryRead("virtual-machine-interface", v.uuid);
      if (!vmi) continue;
      for (const f of refsOf(vmi, "floating_ip_back_refs")) {
        // Ours is deleted; one a user attached by hand is only detached, as kube-manager does.
        if (f.to?.[f.to.length - 1] === vmName) await this.vnc.deleteIfExists("floating-ip", f.uuid);
        else
          await this.vnc
            .refUpdate("floating-ip", f.uuid, "virtual-machine-interface", vmi.uuid, "DELETE")
            .catch(ignore404);
      }
      for (const i of refsOf(vmi, "instance_ip_back_refs"))
        await this.vnc.deleteIfExists("instance-ip", i.uuid);
      await this.vnc.deleteIfExists("virtual-machine-interface", vmi.uuid);
    }
    await this.vnc.deleteIfExists("virtual-machine", vmUuid);
    this.log.debug({ connId }, "TF objects of the connection removed");
  }

  /** Connection ids of the NSM VMs attached to this node's virtual-router. */
  async connectionsHere(): Promise<string[]> {
    const vr = await this.vnc.readByFqName("virtual-router", [
      "default-global-system-config",
      this.opts.vrouter,
    ]);
    return refsOf(vr, "virtual_machine_refs")
      .map((r) => r.to?.[0] ?? "")
      .filter((n) => n.startsWith(vmNameOf("")))
      .map((n) => n.slice(vmNameOf("").length));
  }

  /**
   * The families the client gets default routes in: those the VN reaches outside in, or both (`always`). A
   * public (router_external) VN is routed by the gateway in both; logical-router SNAT and this endpoint's
   * floating IPs are IPv4 only in TF, so they give no IPv6 default route.
   */
  private async external(vn: VncObject, hasFip: boolean): Promise<Set<"v4" | "v6">> {
    const mode = this.opts.defaultRoute ?? "auto";
    if (mode === "always" || (mode === "auto" && vn["router_external"] === true))
      return new Set(["v4", "v6"]);
    if (mode === "never") return new Set();
    return hasFip || (await vnHasSnat(this.vnc, vn)) ? new Set(["v4"]) : new Set();
  }

  private async make(
    made: (() => Promise<unknown>)[],
    type: string,
    body: Record<string, unknown> & { fq_name: string[] },
    readBack = true,
  ): Promise<VncObject> {
    const { obj, created } = await this.vnc.createOrRead(type, body);
    if (created) made.push(() => this.vnc.deleteIfExists(type, obj.uuid));
    // Create responses carry ids only; the read has the server's defaults (MAC, address).
    return readBack ? this.vnc.read(type, obj.uuid) : obj;
  }

  private async readOr(type: string, fq: string[], missing: () => StatusError): Promise<VncObject> {
    // One list call by fq-name (detail) instead of fqname-to-id plus a read.
    let found: VncObject | undefined;
    try {
      found = (await this.vnc.list(type, { fq_names: [fq], detail: true }))[0];
    } catch (err) {
      throw toStatus(err, `reading ${type} ${fq.join(":")}`);
    }
    if (!found) throw missing();
    return found;
  }

  private async idOf(type: string, fq: string[]): Promise<string | undefined> {
    try {
      return await this.vnc.fqNameToId(type, fq);
    } catch (err) {
      if (err instanceof VncError && err.status === 404) return undefined;
      throw err;
    }
  }
}

/**
 * The subnet's host routes of `family` (a route of the other family cannot go through this gateway), plus
 * the family's default route when the VN reaches outside and the host routes do not have it already.
 */
export function routesOf(sn: IpamSubnet, family: TfFamily, external: boolean): string[] {
  const out = (sn.host_routes?.route ?? [])
    .map((r) => r.prefix)
    .filter((p) => (p.includes(":") ? "v6" : "v4") === family);
  const dflt = defaultPrefix[family];
  if (external && !out.some((p) => canonicalCidr(p) === canonicalCidr(dflt))) out.push(dflt);
  return out;
}

function kv(o: Record<string, string>): { key_value_pair: { key: string; value: string }[] } {
  return { key_value_pair: Object.entries(o).map(([key, value]) => ({ key, value })) };
}

function ignore404(err: unknown): void {
  if (!(err instanceof VncError && err.status === 404)) throw err;
}

/** VNC failures as gRPC statuses: unreachable → UNAVAILABLE, exhausted subnet → RESOURCE_EXHAUSTED, … */
export function toStatus(err: unknown, what: string): unknown {
  if (err instanceof StatusError || !(err instanceof VncError)) return err;
  const code =
    err.status === 0 || err.status >= 502
      ? status.UNAVAILABLE
      : /exhausted/i.test(err.body)
        ? status.RESOURCE_EXHAUSTED
        : err.status === 401
          ? status.UNAUTHENTICATED
          : err.status === 403
            ? status.PERMISSION_DENIED
            : err.status === 404
              ? status.NOT_FOUND
              : /does not exist|still referred|children still present/i.test(err.body)
                ? status.FAILED_PRECONDITION
                : err.status === 409
                  ? status.ALREADY_EXISTS
                  : err.status === 400
                    ? status.INVALID_ARGUMENT
                    : status.INTERNAL;
  return new StatusError(code, `${what}: ${err.message}`);
}
