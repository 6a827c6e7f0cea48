// ipam (upstream point2pointipam + strictipam): an endpoint element that gives each connection, per configured
// CIDR, a point-to-point pair of host addresses — dst (NSE side) and src (NSC side) — with a host route to the
// other side (spec §1.3, §2.3 step 6). The pair is kept in per-connection metadata so a refresh returns the same
// addresses; after an NSE restart the addresses the refreshed request carries are taken back when they are in
// the pool and free. Addresses inside the request's excluded_prefixes are never handed out.
//
// Policies (NSM_IPAM_POLICY, spec §6 features/ipam-policies):
//   polite — addresses the client sends from outside the pools are left in the context as they are (they are
//            not allocated, just accepted);
//   strict — such addresses, and the host routes to them, are removed.
// In both, an address from inside a pool that this connection cannot own (held by another connection,
// excluded, or the network/broadcast address) is replaced: letting it through would put one address on two
// connections.
import { status } from "@grpc/grpc-js";
import { ConnectionContext, IPContext, Route } from "../../api/connectioncontext.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { StatusError, invalidArgument } from "../../core/errors.js";
import {
  contains,
  formatCidr,
  formatIp,
  hostCidr,
  maxBits,
  overlaps,
  tryParseCidr,
  parseCidrOrIpCached,
  type Cidr,
  type IpAddr,
} from "./cidr.js";
import { AddressPool } from "./pool.js";

export type IpamPolicy = "polite" | "strict";

export interface IpamOptions {
  /** What to do with client-sent addresses from outside the pools; default "polite". */
  policy?: IpamPolicy;
}

/** One pool's pair for one connection. */
interface Pair {
  dst: bigint;
  src: bigint;
}

/** Per-connection state: the pair held in each pool (index = pool index). */
class Held {
  constructor(readonly pairs: ReadonlyMap<number, Pair>) {}
}

/**
 * The ipam element for an endpoint. `cidrs` are the pools (IPv4 and/or IPv6); each gives every connection one
 * pair, so one IPv4 and one IPv6 CIDR make a dual-stack connection. Throws when a CIDR is invalid, when two
 * CIDRs overlap, or when the policy is unknown.
 */
export function point2pointIpam(cidrs: string[], opts: IpamOptions = {}): NetworkServiceElement {
  const policy = opts.policy ?? "polite";
  if (policy !== "polite" && policy !== "strict") {
    throw new Error(`ipam: unknown policy "${String(policy)}" (expected "polite" or "strict")`);
  }
  if (cidrs.length === 0) throw new Error("ipam: at least one CIDR is required (e.g. 169.254.0.0/16)");
  const pools = cidrs.map((text) => {
    const cidr = tryParseCidr(text.trim());
    if (!cidr) throw new Error(`ipam: invalid CIDR "${text}" (expected e.g. 169.254.0.0/16 or fd00::/64)`);
    return new AddressPool(cidr);
  });
  for (let i = 0; i < pools.length; i++) {
    for (let j = i + 1; j < pools.length; j++) {
      if (overlaps(pools[i]!.cidr, pools[j]!.cidr)) {
        throw new Error(`ipam: CIDRs ${cidrs[i]} and ${cidrs[j]} overlap; give each pool its own range`);
      }
    }
  }
  const key = Symbol("ipam");

  const inAnyPool = (c: Cidr): boolean => pools.some((p) => contains(p.cidr, c));

  function release(pairs: Iterable<[number, Pair]>): void {
    for (const [i, pair] of pairs) {
      pools[i]!.release(pair.dst);
      pools[i]!.release(pair.src);
    }
  }

  /** The first address of `addrs` that belongs to the pool and can be taken by this connection. */
  function recover(
    pool: AddressPool,
    addrs: readonly string[],
    excluded: readonly Cidr[],
  ): bigint | undefined {
    for (const text of addrs) {
      const c = parseCidrOrIpCached(text);
      if (c && pool.take(c, excluded)) return c.value;
    }
    return undefined;
  }

  function allocate(pool: AddressPool, excluded: readonly Cidr[]): bigint {
    const value = pool.allocate(excluded);
    if (value !== undefined) return value;
    const ex = excluded.filter((e) => overlaps(e, pool.cidr)).map(formatCidr);
    throw new StatusError(
      status.RESOURCE_EXHAUSTED,
      `ipam: no free address left in ${pool.text} (${pool.inUse} in use` +
        (ex.length > 0 ? `, excluded prefixes ${ex.join(", ")}` : "") +
        "); use a wider CIDR (NSM_CIDR_PREFIX) or close unused connections",
    );
  }

  return {
    name: "ipam",

    async request(req, ctx, next) {
      const conn = req.connection;
      if (!conn) throw invalidArgument("connection", "missing from the request");
      conn.context ??= ConnectionContext.fromPartial({});
      const ipc = (conn.context.ipContext ??= IPContext.fromPartial({}));
      const excluded = parseExcluded(ipc.excludedPrefixes);
      const meta = ctx.connMeta();
      const prev = meta.get(key);
      const before = prev instanceof Held ? prev.pairs : new Map<number, Pair>();

      // Pairs kept from before this request, and pairs recovered or allocated now (released on failure).
      const kept = new Map<number, Pair>();
      const acquired = new Map<number, Pair>();
      const forget = (): void => {
        release(acquired);
        if (kept.size > 0) meta.set(key, new Held(kept));
        else meta.delete(key);
      };
      try {
        pools.forEach((pool, i) => {
          const old = before.get(i);
          if (old && !isExcluded(pool, old.dst, excluded) && !isExcluded(pool, old.src, excluded)) {
            kept.set(i, old);
            return;
          }
          if (old) {
            release([[i, old]]);
            ctx.log.info(
              { dst: formatIp(addr(pool, old.dst)), src: formatIp(addr(pool, old.src)) },
              "ipam: addresses now excluded, replacing them",
            );
          }
          const recoveredDst = recover(pool, ipc.dstIpAddrs, excluded);
          const dst = recoveredDst ?? allocate(pool, excluded);
          let src: bigint;
          const recoveredSrc = recover(pool, ipc.srcIpAddrs, excluded);
          try {
            src = recoveredSrc ?? allocate(pool, excluded);
          } catch (err) {
            pool.release(dst);
            throw err;
          }
          acquired.set(i, { dst, src });
          if (recoveredDst !== undefined || recoveredSrc !== undefined) {
            ctx.log.info(
              { dst: formatIp(addr(pool, dst)), src: formatIp(addr(pool, src)), pool: pool.text },
              "ipam: addresses recovered from the request",
            );
          }
        });
      } catch (err) {
        forget();
        throw err;
      }
      // In pool order, so the addresses keep their order whichever pair was replaced.
      const pairs = new Map([...kept, ...acquired].sort(([a], [b]) => a - b));
      meta.set(key, new Held(pairs));
      rewrite(
        ipc,
        excluded,
        [...pairs].map(([i, p]) => [pools[i]!, p] as const),
      );
      ctx.log.debug(
        { src: ipc.srcIpAddrs, dst: ipc.dstIpAddrs, policy },
        acquired.size > 0 ? "ipam: allocated" : "ipam: kept",
      );

      try {
        return await next.request(req, ctx);
      } catch (err) {
        forget();
        throw err;
      }
    },

    async close(conn, ctx, next) {
      const meta = ctx.connMeta();
      const held = meta.get(key);
      if (held instanceof Held) {
        release(held.pairs);
        meta.delete(key);
      }
      return next.close(conn, ctx);
    },
  };

  /** Puts the connection's pairs first in the context and keeps or drops what the client sent (see top). */
  function rewrite(
    ipc: IPContext,
    excluded: readonly Cidr[],
    pairs: ReadonlyArray<readonly [AddressPool, Pair]>,
  ): void {
    const dropped = new Set<string>();
    const keepAddr = (text: string): boolean => {
      const c = parseCidrOrIpCached(text);
      let keep: boolean;
      if (!c) keep = policy === "polite";
      else if (inAnyPool(hostCidr(c))) keep = false;
      else if (excluded.some((e) => overlaps(e, hostCidr(c)))) keep = false;
      else keep = policy === "polite";
      if (!keep && c) dropped.add(formatCidr(hostCidr(c)));
      return keep;
    };
    const keepRoute = (r: Route): boolean => {
      const c = parseCidrOrIpCached(r.prefix);
      if (!c) return policy === "polite";
      if (c.bits !== maxBits(c.family)) return true;
      return !inAnyPool(c) && !dropped.has(formatCidr(c));
    };
    const srcs = pairs.map(([pool, p]) => formatCidr(hostCidr(addr(pool, p.src))));
    const dsts = pairs.map(([pool, p]) => formatCidr(hostCidr(addr(pool, p.dst))));
    ipc.srcIpAddrs = unique([...srcs, ...ipc.srcIpAddrs.filter(keepAddr)]);
    ipc.dstIpAddrs = unique([...dsts, ...ipc.dstIpAddrs.filter(keepAddr)]);
    ipc.srcRoutes = uniqueRoutes([...dsts.map(hostRoute), ...ipc.srcRoutes.filter(keepRoute)]);
    ipc.dstRoutes = uniqueRoutes([...srcs.map(hostRoute), ...ipc.dstRoutes.filter(keepRoute)]);
  }
}

function addr(pool: AddressPool, value: bigint): IpAddr {
  return { family: pool.cidr.family, value };
}

function isExcluded(pool: AddressPool, value: bigint, excluded: readonly Cidr[]): boolean {
  return excluded.some((e) => contains(e, addr(pool, value)));
}

/** excluded_prefixes as CIDRs; a bare address counts as a host prefix; anything else is the caller's error. */
function parseExcluded(list: readonly string[]): Cidr[] {
  return list.map((text) => {
    const c = parseCidrOrIpCached(text);
    if (!c) {
      throw invalidArgument(
        "connection.context.ip_context.excluded_prefixes",
        `"${text}" is not a CIDR (expected e.g. 10.96.0.0/12)`,
      );
    }
    return c;
  });
}

function hostRoute(prefix: string): Route {
  return Route.fromPartial({ prefix });
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

function uniqueRoutes(routes: Route[]): Route[] {
  const seen = new Set<string>();
  return routes.filter((r) => {
    const k = `${r.prefix}\u0000${r.nextHop}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
