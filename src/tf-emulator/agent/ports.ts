// The agent's port subscriptions (port_ipc_handler.cc): `POST /vm` (the CNI's vm-vn ports, files under
// <root>/vm/<key>/<vmi>) and `POST /port` (Nova's vrouter-port-control, files <root>/<vmi>), each reloaded at
// start, validated in TF's order with TF's texts, and versioned for `/syncports`: a sync starts a new version,
// and entries not re-added within the stale timeout are dropped, as the agent's stale cleaner does.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { safeName, uuidPattern, type AgentGeneration } from "../../forwarder/tf/agent.js";
import type { ResolvedPort } from "./resolve.js";

/** A subscribed port: what was posted (strings), the sync version it was added in, its config once known. */
export interface Subscription {
  body: Record<string, string>;
  version: number;
  resolved?: ResolvedPort;
}

/** A request the agent refuses: TF wraps the text in braces (`{ <text> }`) and answers 500. */
export class PortError extends Error {}

const nilUuid = "00000000-0000-0000-0000-000000000000";
const author = "nsm tf-emulator agent";

/** boost's StringToUuid as the agent uses it: anything that is not a uuid reads as the nil uuid. */
const toUuid = (s: string): string => (uuidPattern.test(s) ? s.toLowerCase() : nilUuid);

type Json = Record<string, unknown>;

function uuidMember(d: Json, member: string): string {
  const v = d[member];
  if (typeof v !== "string") throw new PortError(`Invalid or missing data for <${member}>`);
  return toUuid(v);
}

function stringMember(d: Json, member: string): string {
  const v = d[member];
  if (typeof v !== "string") throw new PortError(`Invalid or missing field for <${member}>`);
  return v;
}

function intMember(d: Json, member: string): number {
  const v = d[member];
  if (typeof v !== "number" || !Number.isInteger(v))
    throw new PortError(`Invalid or missing field for <${member}>`);
  return v;
}

/** Exactly five colons and not all zero (`PortIpcHandler::ValidateMac`). */
function validMac(mac: string): boolean {
  return mac.split(":").length === 6 && !/^[0:]*$/.test(mac);
}

/** Parses a body as the agent does: bad JSON and non-objects are refused with the text quoting the body. */
export function parseBody(text: string, allowArray: boolean): Json | Json[] {
  let d: unknown;
  try {
    d = JSON.parse(text);
  } catch {
    throw new PortError(`Invalid Json string ==> ${text}`);
  }
  if (Array.isArray(d) && allowArray) return d as Json[];
  if (typeof d !== "object" || d === null || Array.isArray(d))
    throw new PortError(`Unexpected Json string ==> ${text}`);
  return d as Json;
}

/** A `POST /vm` body checked in `MakeAddVmVnPortRequest`'s order. */
export function vmPortBody(d: Json): Record<string, string> {
  const vmUuid = uuidMember(d, "vm-uuid");
  const hostIf = stringMember(d, "host-ifname");
  const vmName = stringMember(d, "vm-name");
  // The emulator keeps port files under the VM's name: a name that is not a plain file name is refused here
  // (TF would write wherever it points).
  if (!safeName(vmName)) throw new PortError("Invalid or missing field for <vm-name>");
  const opt = (k: string): string => (typeof d[k] === "string" ? d[k] : "");
  return {
    "vm-uuid": vmUuid,
    "vn-uuid": uuidMember(d, "vn-uuid"),
    "vmi-uuid": uuidMember(d, "vmi-uuid"),
    "vm-id": opt("vm-id"),
    "vm-name": vmName,
    "host-ifname": hostIf,
    "vm-ifname": opt("vm-ifname"),
    "vm-namespace": opt("vm-namespace"),
  };
}

/** A `POST /port` element checked in `MakeAddVmiUuidRequest`'s order; numbers stay numbers in the file. */
export function portBody(d: Json): Record<string, string> {
  const id = uuidMember(d, "id");
  const instance = uuidMember(d, "instance-id");
  const vn = uuidMember(d, "vn-id");
  const project = uuidMember(d, "vm-project-id");
  const displayName = stringMember(d, "display-name");
  const ip = stringMember(d, "ip-address");
  const ip6 = stringMember(d, "ip6-address");
  const type = intMember(d, "type");
  if (type !== 1 && type !== 2 && vn === nilUuid) throw new PortError("Invalid VN uuid");
  const systemName = stringMember(d, "system-name");
  const mac = stringMember(d, "mac-address");
  if (!validMac(mac)) throw new PortError("Invalid MAC, Use xx:xx:xx:xx:xx:xx format");
  const rx = intMember(d, "rx-vlan-id");
  const tx = intMember(d, "tx-vlan-id");
  const vhost = typeof d["vhostuser-mode"] === "number" ? d["vhostuser-mode"] : 0;
  // A remote (type 2) port starts link-down unless the file says otherwise.
  const link = typeof d["link-state"] === "number" ? d["link-state"] : type === 2 ? 0 : 1;
  return {
    id,
    "instance-id": instance,
    "display-name": displayName,
    "ip-address": ip,
    "ip6-address": ip6,
    "vn-id": vn,
    "vm-project-id": project,
    "mac-address": mac,
    "system-name": systemName,
    type: String(type),
    "rx-vlan-id": String(rx),
    "tx-vlan-id": String(tx),
    "vhostuser-mode": String(vhost),
    "link-state": String(link),
  };
}

const numericPortKeys = new Set(["type", "rx-vlan-id", "tx-vlan-id", "vhostuser-mode", "link-state"]);

export class PortTable {
  /** VM uuid → VMI uuid → subscription (`POST /vm`). */
  readonly vms = new Map<string, Map<string, Subscription>>();
  /** VMI uuid → subscription (`POST /port`). */
  readonly ports = new Map<string, Subscription>();
  /** Bumped by `/syncports`; entries carry the version they were (re-)added in. */
  version = 0;
  private readonly vmDir: string;

  constructor(
    private readonly root: string,
    private readonly generation: AgentGeneration,
  ) {
    this.vmDir = join(root, "vm");
  }

  /** The agent reloads its port files at start (`ReloadAllPorts`); files that do not parse are skipped. */
  reload(): void {
    for (const f of safeList(this.root)) {
      if (!uuidPattern.test(f)) continue;
      this.tryLoad(join(this.root, f), (d) => this.addPort(portBody(d), false));
    }
    for (const sub of safeList(this.vmDir))
      for (const f of safeList(join(this.vmDir, sub)))
        this.tryLoad(join(this.vmDir, sub, f), (d) => this.addVmPort(vmPortBody(d), false));
  }

  addVmPort(body: Record<string, string>, persist: boolean): void {
    const vm = body["vm-uuid"]!;
    let m = this.vms.get(vm);
    if (!m) {
      m = new Map<string, Subscription>();
      this.vms.set(vm, m);
    }
    const vmi = body["vmi-uuid"]!;
    // A re-POST updates what the port is (e.g. a new host interface); its known config stays.
    m.set(vmi, { body, version: this.version, resolved: m.get(vmi)?.resolved });
    if (!persist) return;
    const key = this.generation === "r2011" ? body["vm-name"]! : vm;
    const file = join(this.vmDir, key, vmi);
    // The agent never overwrites an existing file (the CNI may have written it first).
    if (existsSync(file)) return;
    mkdirSync(join(this.vmDir, key), { recursive: true });
    writeFileSync(file, JSON.stringify({ ...body, author, time: new Date().toISOString() }, null, 4));
  }

  /** `DELETE /vm/<uuid>`: only vm/<vm-uuid>/ goes; on R2011+ the CNI removes its vm/<vm-name>/ itself. */
  deleteVm(vm: string): void {
    this.vms.delete(vm);
    rmSync(join(this.vmDir, vm), { recursive: true, force: true });
  }

  addPort(body: Record<string, string>, persist: boolean): void {
    const id = body.id!;
    this.ports.set(id, { body, version: this.version, resolved: this.ports.get(id)?.resolved });
    if (!persist) return;
    const file = join(this.root, id);
    if (existsSync(file)) return;
    mkdirSync(this.root, { recursive: true });
    const doc: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(body)) doc[k] = numericPortKeys.has(k) ? Number(v) : v;
    if (body.type !== "2") delete doc["link-state"];
    writeFileSync(file, JSON.stringify({ ...doc, author, time: new Date().toISOString() }, null, 4));
  }

  deletePort(id: string): void {
    this.ports.delete(id);
    rmSync(join(this.root, id), { force: true });
  }

  /** Enable/disable of a remote (type 2) port: TF's texts, the link state persisted. */
  setLinkState(id: string, up: boolean): void {
    const sub = this.ports.get(id);
    if (!sub) throw new PortError(`Port Not found ${id}`);
    if (sub.body.type !== "2") throw new PortError(`Incorrect Port type for ${id}`);
    const state = up ? "1" : "0";
    if (sub.body["link-state"] === state) return;
    sub.body["link-state"] = state;
    rmSync(join(this.root, id), { force: true });
    this.addPort(sub.body, true);
  }

  /** Drops the entries of versions before `version` (the stale cleaner's timeout after a `/syncports`). */
  dropStale(version: number): string[] {
    const gone: string[] = [];
    for (const [id, sub] of this.ports)
      if (sub.version < version) {
        this.deletePort(id);
        gone.push(id);
      }
    for (const [vm, m] of this.vms) {
      for (const [vmi, sub] of m)
        if (sub.version < version) {
          m.delete(vmi);
          gone.push(vmi);
        }
      if (m.size === 0) this.deleteVm(vm);
    }
    return gone;
  }

  private tryLoad(file: string, add: (d: Json) => void): void {
    try {
      const d = parseBody(readFileSync(file, "utf8"), false);
      if (!Array.isArray(d)) add(d);
    } catch {
      // not a port file
    }
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
