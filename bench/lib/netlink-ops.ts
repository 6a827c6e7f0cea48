// Timing of single rtnetlink operations through src/dataplane, shared by `bench:dataplane-ops` (each
// operation alone, against spawning `ip`) and `bench:dataplane` (the requests of one local connection setup,
// exactly as the kernel forwarder sends them, beside the forwarder's measured extra cost in the same run).
import netlink from "netlink";
import { performance } from "node:perf_hooks";
import type { KnownLink, NetnsHandle } from "../../src/dataplane/index.js";
import { NLM_F, RTM } from "../../src/dataplane/nl/socket.js";

/** Nearest-rank quantile (q in 0..1); NaN for no values. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
}

/** Wall milliseconds of one call. */
export async function timed(fn: () => unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Runs `op(i)` for i in 0..n-1, one at a time, and returns the n durations (ms). */
export async function sample(n: number, op: (i: number) => unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await timed(() => op(i)));
  return out;
}

/**
 * The rtnetlink requests a local (veth) connection needs, in the kernel forwarder's order
 * (src/forwarder/kernel/kernel.ts `build` → `LinkOps.createVeth`, then ipcontext.ts `applySide` per side with
 * the icmp-responder's IP context: one /32 address and one host route to the peer per side; no neighbours,
 * no sysctls, no MTU, nothing in the node namespace): the changes themselves, the alias that tags the links
 * (it cannot be set in the create request), one index lookup per side (addresses and routes name the link
 * by index) and the address-in-use check. Lookups beyond these count as the forwarder's overhead. Checked
 * against the forwarder by counting the requests it sends.
 */
export const localSetupOps = [
  { key: "veth_create", what: "RTM_NEWLINK veth in the client pod, peer made in the NSE pod, client end up" },
  { key: "client_alias", what: "RTM_SETLINK alias on the client end (by name)" },
  { key: "nse_alias_up", what: "RTM_SETLINK alias + up on the NSE end (by name)" },
  { key: "client_index", what: "RTM_GETLINK client end (its index, once per side)" },
  { key: "client_addr_dump", what: "RTM_GETADDR dump of the client pod (address-in-use check)" },
  { key: "client_addr_add", what: "RTM_NEWADDR client /32" },
  { key: "client_route_add", what: "RTM_NEWROUTE host route to the NSE address, src = client address" },
  { key: "nse_index", what: "RTM_GETLINK NSE end" },
  { key: "nse_addr_dump", what: "RTM_GETADDR dump of the NSE pod (holds every connection's address)" },
  { key: "nse_addr_add", what: "RTM_NEWADDR NSE /32" },
  { key: "nse_route_add", what: "RTM_NEWROUTE host route to the client address, src = NSE address" },
] as const;

export type LocalSetupOpKey = (typeof localSetupOps)[number]["key"];

export interface LocalSetupSpec {
  /** Client-side interface name (in `client`) and NSE-side name (in `nse`). */
  clientIf: string;
  nseIf: string;
  alias: string;
  /** Addresses without prefix: each side gets its own as /32 and a host route to the other's. */
  clientIp: string;
  nseIp: string;
}

/** RTM_SETLINK naming the link by IFLA_IFNAME (ifi_index 0): alias, and optionally up. */
function setAliasByName(ns: NetnsHandle, name: string, alias: string, up: boolean): Promise<unknown> {
  return ns.rtnl.request(
    RTM.SETLINK,
    (out) =>
      netlink.rt.formatLinkMessage(
        {
          kind: "link",
          data: { index: 0, ...(up ? { flags: { up: true }, change: { up: true } } : {}) },
          attrs: { ifname: name, ifalias: alias },
        },
        out,
      ),
    0,
    ns.ctx("link set alias", name),
  );
}

/** An IPv4 address dump, issued as the duplicate check issues it; its replies are not decoded. */
function addrDump(ns: NetnsHandle): Promise<unknown> {
  return ns.rtnl.requestRaw(
    RTM.GETADDR,
    (out) => netlink.rt.formatAddressMessage({ kind: "address", data: { family: 2 }, attrs: {} }, out),
    NLM_F.DUMP,
    ns.ctx("addr list", "*"),
  );
}

/**
 * Sends the requests of `localSetupOps` for one connection, each on its own and one after the other,
 * through the same sockets and message layer the forwarder uses, and returns each one's wall time (ms).
 */
export async function timeLocalSetup(
  client: NetnsHandle,
  nse: NetnsHandle,
  s: LocalSetupSpec,
): Promise<Record<LocalSetupOpKey, number>> {
  let c: KnownLink | undefined;
  let e: KnownLink | undefined;
  const t: Partial<Record<LocalSetupOpKey, number>> = {};
  t.veth_create = await timed(() =>
    client.link.createVeth({ name: s.clientIf, up: true, peer: { name: s.nseIf, netns: nse } }),
  );
  t.client_alias = await timed(() => setAliasByName(client, s.clientIf, s.alias, false));
  t.nse_alias_up = await timed(() => setAliasByName(nse, s.nseIf, s.alias, true));
  t.client_index = await timed(
    async () => (c = { name: s.clientIf, index: await client.link.index(s.clientIf) }),
  );
  t.client_addr_dump = await timed(() => addrDump(client));
  t.client_addr_add = await timed(() => client.addr.add(c!, `${s.clientIp}/32`, { allowDuplicate: true }));
  t.client_route_add = await timed(() =>
    client.route.replace({ dst: `${s.nseIp}/32`, dev: c!, src: s.clientIp }),
  );
  t.nse_index = await timed(async () => (e = { name: s.nseIf, index: await nse.link.index(s.nseIf) }));
  t.nse_addr_dump = await timed(() => addrDump(nse));
  t.nse_addr_add = await timed(() => nse.addr.add(e!, `${s.nseIp}/32`, { allowDuplicate: true }));
  t.nse_route_add = await timed(() => nse.route.replace({ dst: `${s.clientIp}/32`, dev: e!, src: s.nseIp }));
  return t as Record<LocalSetupOpKey, number>;
}
