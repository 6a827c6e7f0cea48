// Applies one side of a connection's IP context to an interface: addresses, routes (with source address and
// next hop), neighbours, MTU. Refreshes apply only the difference to what was applied before.
import type { IPContext } from "../../api/connectioncontext.js";
import type { KnownLink, NetnsHandle } from "../../dataplane/index.js";
import { isErrno } from "../../dataplane/index.js";

export interface SideConfig {
  addrs: string[];
  routes: { dst: string; gateway?: string; src?: string; metric?: number }[];
  neighbors: { ip: string; mac: string }[];
}

export const emptySide: SideConfig = { addrs: [], routes: [], neighbors: [] };

const family = (ip: string): 4 | 6 => (ip.includes(":") ? 6 : 4);
const hostOf = (cidr: string): string => cidr.split("/")[0]!;

/**
 * What one side gets: the client side has src addresses and src routes, the endpoint side dst addresses and
 * dst routes (spec §1.3). A route without next hop goes straight out of the interface; its source is this
 * side's address of the same family.
 */
export function sideConfig(ip: IPContext | undefined, side: "src" | "dst"): SideConfig {
  if (!ip) return emptySide;
  const addrs = side === "src" ? ip.srcIpAddrs : ip.dstIpAddrs;
  const routes = side === "src" ? ip.srcRoutes : ip.dstRoutes;
  const srcFor = (dst: string): string | undefined => {
    const a = addrs.find((x) => family(x) === family(hostOf(dst)));
    return a ? hostOf(a) : undefined;
  };
  return {
    addrs: [...addrs],
    routes: routes.map((r) => ({
      dst: r.prefix,
      ...(r.nextHop ? { gateway: r.nextHop } : {}),
      ...(srcFor(r.prefix) ? { src: srcFor(r.prefix) } : {}),
    })),
    neighbors: side === "src" ? ip.ipNeighbors.map((n) => ({ ip: n.ip, mac: n.hardwareAddress })) : [],
  };
}

const routeKey = (r: SideConfig["routes"][number]): string =>
  `${r.dst}|${r.gateway ?? ""}|${r.src ?? ""}|${r.metric ?? ""}`;

/** Makes `ifname` in `ns` carry `want`, given that `had` is what is there now. */
export async function applySide(
  ns: NetnsHandle,
  ifname: string,
  had: SideConfig,
  want: SideConfig,
): Promise<void> {
  // One lookup of the interface for every change below (each would otherwise resolve the name again);
  // none when there is nothing to change.
  let known: KnownLink | undefined;
  const dev = async (): Promise<KnownLink> =>
    (known ??= { name: ifname, index: await ns.link.index(ifname) });

  const hadAddrs = new Set(had.addrs);
  const wantAddrs = new Set(want.addrs);
  for (const a of had.addrs)
    if (!wantAddrs.has(a)) await ns.addr.del(await dev(), a).catch(ignore("ENOENT", "EADDRNOTAVAIL"));
  // The duplicate check (one address dump) turns "address already used by another interface" into a clear
  // error instead of a silently broken connection.
  for (const a of want.addrs) if (!hadAddrs.has(a)) await ns.addr.add(await dev(), a);

  const wantRoutes = new Map(want.routes.map((r) => [routeKey(r), r]));
  const hadRoutes = new Map(had.routes.map((r) => [routeKey(r), r]));
  for (const [k, r] of hadRoutes)
    if (!wantRoutes.has(k)) await ns.route.del({ ...r, dev: await dev() }).catch(ignore("ESRCH", "ENOENT"));
  for (const [k, r] of wantRoutes) {
    if (hadRoutes.has(k)) continue;
    await ns.route.replace({ ...r, dev: await dev(), ...(r.gateway ? { onlink: true } : {}) });
  }

  const wantNeigh = new Map(want.neighbors.map((n) => [n.ip, n]));
  for (const n of had.neighbors)
    if (!wantNeigh.has(n.ip)) await ns.neigh.del({ dev: await dev(), ip: n.ip }).catch(ignore("ENOENT"));
  for (const n of want.neighbors) await ns.neigh.replace({ dev: await dev(), ip: n.ip, mac: n.mac });
}

function ignore(...codes: string[]): (err: unknown) => void {
  return (err) => {
    if (!isErrno(err, ...codes)) throw err;
  };
}
