// excludedprefixes (spec §2.3 step 3, §6 features/exclude-prefixes and exclude-prefixes-client).
//
// Server (nsmgr): adds configured prefixes — typically the cluster's pod and service CIDRs, read from a YAML
// file that may change at run time — to ip_context.excluded_prefixes, so the endpoint's IPAM avoids them.
//
// Client (NSC with several connections): adds the addresses and routes of the client's other connections to
// each request's excluded_prefixes, and refuses (closing it again) a connection whose endpoint handed out an
// address inside an excluded prefix anyway.
import { readFileSync, statSync, type BigIntStats } from "node:fs";
import { status } from "@grpc/grpc-js";
import { parse as parseYaml } from "yaml";
import type { Connection } from "../../api/connection.js";
import { ConnectionContext, IPContext } from "../../api/connectioncontext.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { StatusError, invalidArgument } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import {
  canonicalCidr,
  formatCidr,
  hostCidr,
  networkOf,
  overlaps,
  tryParseCidr,
  parseCidrOrIpCached,
  type Cidr,
} from "../ipam/cidr.js";

/** Where upstream nsmgr reads the excluded prefixes (a ConfigMap mount). */
export const defaultPrefixesFile = "/var/lib/networkservicemesh/config/excluded_prefixes.yaml";

/** A list entry's identity: its canonical CIDR text when it parses, else the text itself. */
const keyOf = (text: string): string => canonicalCidr(text) ?? text;

function ipContextOf(conn: Connection | undefined): IPContext {
  if (!conn) throw invalidArgument("connection", "missing from the request");
  conn.context ??= ConnectionContext.fromPartial({});
  return (conn.context.ipContext ??= IPContext.fromPartial({}));
}

/** Previously added prefixes, so a prefix removed from the configuration is removed on the next refresh. */
class Added {
  constructor(readonly keys: ReadonlySet<string>) {}
}

/**
 * Server element: adds `source()` to the request's excluded_prefixes (deduplicated, existing entries first).
 * With nothing configured and nothing added before, the request's list passes through untouched (not even
 * deduplicated): clients send every other connection's addresses, and re-parsing them was a hot spot.
 * With per-connection metadata (after `begin`), a prefix this element added earlier and no longer configured
 * is taken out again on refresh.
 */
export function excludedPrefixesServer(source: () => readonly string[]): NetworkServiceElement {
  const key = Symbol("excludedprefixes");
  return {
    name: "excludedprefixes",
    async request(req, ctx, next) {
      const ipc = ipContextOf(req.connection);
      const configured = source();
      const configuredKeys = new Set(configured.map(keyOf));
      const meta = ctx.connection ? ctx.connMeta() : undefined;
      const prev = meta?.get(key);
      // Nothing configured and nothing added before: the common case costs no parsing at all.
      if (configured.length === 0 && !(prev instanceof Added && prev.keys.size > 0))
        return next.request(req, ctx);
      const stale = prev instanceof Added ? [...prev.keys].filter((k) => !configuredKeys.has(k)) : [];

      const list: string[] = [];
      const seen = new Set<string>();
      for (const text of ipc.excludedPrefixes) {
        const k = keyOf(text);
        if (seen.has(k) || stale.includes(k)) continue;
        seen.add(k);
        list.push(text);
      }
      const added = new Set<string>(
        prev instanceof Added ? [...prev.keys].filter((k) => configuredKeys.has(k)) : [],
      );
      for (const text of configured) {
        const k = keyOf(text);
        if (seen.has(k)) continue;
        seen.add(k);
        list.push(text);
        added.add(k);
      }
      ipc.excludedPrefixes = list;
      if (meta) meta.set(key, new Added(added));
      ctx.log.debug({ excludedPrefixes: list }, "excludedprefixes: request");
      return next.request(req, ctx);
    },
  };
}

/**
 * Reads `prefixes: [...]` from a YAML document; throws an Error naming `origin` and the bad entry. An empty
 * document means no prefixes. Duplicates are dropped.
 */
export function parsePrefixesYaml(text: string, origin: string): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`${origin}: not valid YAML: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${origin}: expected a mapping with a "prefixes" list, e.g. "prefixes: [10.96.0.0/12]"`);
  }
  const record = doc as Record<string, unknown>;
  // Upstream's YAML decoding matches field names case-insensitively; "Prefixes" is seen in the wild.
  const raw = record.prefixes ?? record.Prefixes;
  if (raw === null || raw === undefined) return [];
  if (!Array.isArray(raw)) throw new Error(`${origin}: "prefixes" must be a list of CIDRs`);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const entry of raw as unknown[]) {
    const text = typeof entry === "string" ? entry.trim() : "";
    const c = tryParseCidr(text);
    if (!c) {
      throw new Error(
        `${origin}: prefixes entry ${JSON.stringify(entry)} is not a CIDR (expected e.g. 10.96.0.0/12)`,
      );
    }
    const k = formatCidr(c);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(text);
  }
  return out;
}

/**
 * A prefix source backed by a YAML file (`prefixes: [...]`). Each call stats the file (a few microseconds) and
 * re-reads it when its identity, size or times changed — this also follows the symlink swap of a Kubernetes
 * ConfigMap mount. A missing file means no prefixes; an invalid file is logged and the previous list kept.
 */
export function prefixesFromFile(path: string, log?: Logger): () => readonly string[] {
  let stamp: string | undefined;
  let current: readonly string[] = [];
  return () => {
    let st: BigIntStats | undefined;
    try {
      st = statSync(path, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      log?.warn(
        { path, err: String(err) },
        "excludedprefixes: cannot stat the prefixes file; treating it as missing",
      );
      st = undefined;
    }
    const next = st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : "missing";
    if (next === stamp) return current;
    stamp = next;
    if (!st) {
      if (current.length > 0) log?.info({ path }, "excludedprefixes: prefixes file removed; no prefixes");
      current = [];
      return current;
    }
    try {
      current = parsePrefixesYaml(readFileSync(path, "utf8"), path);
      log?.info({ path, prefixes: current }, "excludedprefixes: prefixes loaded");
    } catch (err) {
      log?.error(
        { path, err: err instanceof Error ? err.message : String(err) },
        "excludedprefixes: prefixes file rejected; keeping the previous list",
      );
    }
    return current;
  };
}

interface Used {
  readonly id: string;
  readonly cidr: Cidr;
  readonly text: string;
}

/**
 * What a connection occupies: its addresses (their networks) and its route prefixes, default routes aside,
 * by canonical text.
 */
function usedBy(ipc: IPContext | undefined): Map<string, Cidr> {
  if (!ipc) return new Map();
  const texts = [
    ...ipc.srcIpAddrs,
    ...ipc.dstIpAddrs,
    ...ipc.srcRoutes.map((r) => r.prefix),
    ...ipc.dstRoutes.map((r) => r.prefix),
  ];
  const out = new Map<string, Cidr>();
  for (const text of texts) {
    const c = parseCidrOrIpCached(text);
    // A default route is not an address space the connection owns; excluding it would exclude everything.
    if (!c || c.bits === 0) continue;
    const net = networkOf(c);
    out.set(formatCidr(net), net);
  }
  return out;
}

/**
 * Client element: keeps, per connection id, what each of the client's connections occupies; adds the other
 * connections' prefixes to every request; on a response whose address overlaps an excluded prefix it closes
 * the connection and fails with FAILED_PRECONDITION. Prefixes it added are taken out of the returned
 * connection again, so a stored connection does not carry stale exclusions into its refreshes.
 */
export function excludedPrefixesClient(): NetworkServiceElement {
  // What each connection occupies, with its text formatted once: every request lists all the others.
  const used = new Map<string, Used[]>();
  const others = (id: string): Used[] => {
    const out: Used[] = [];
    for (const [other, list] of used) if (other !== id) out.push(...list);
    return out;
  };

  return {
    name: "excludedprefixes",

    async request(req, ctx, next) {
      const ipc = ipContextOf(req.connection);
      const id = req.connection!.id;
      const original = [...ipc.excludedPrefixes];
      const originalKeys = new Set(original.map(keyOf));
      const addedKeys = new Set<string>();
      const list = [...original];
      for (const u of others(id)) {
        if (originalKeys.has(u.text) || addedKeys.has(u.text)) continue;
        addedKeys.add(u.text);
        list.push(u.text);
      }
      ipc.excludedPrefixes = list;
      if (addedKeys.size > 0)
        ctx.log.debug({ added: [...addedKeys] }, "excludedprefixes: excluding other connections");

      let resp: Connection;
      try {
        resp = await next.request(req, ctx);
      } catch (err) {
        ipc.excludedPrefixes = original;
        throw err;
      }
      const rip = resp.context?.ipContext;

      // Checked against the other connections as they are now: one may have completed meanwhile.
      const conflict = findConflict(rip, original, others(id));
      if (conflict) {
        used.delete(id);
        ipc.excludedPrefixes = original;
        let message =
          `excludedprefixes: endpoint "${resp.networkServiceEndpointName}" gave connection ${id} the address ` +
          `${conflict.addr}, which overlaps the excluded prefix ${conflict.prefix} (${conflict.why}); ` +
          "the connection was closed — give the endpoints CIDRs that do not overlap";
        try {
          await next.close(resp, ctx);
        } catch (err) {
          message += `; closing it failed too: ${err instanceof Error ? err.message : String(err)}`;
        }
        ctx.log.error({ connection: id, addr: conflict.addr, prefix: conflict.prefix }, message);
        throw new StatusError(status.FAILED_PRECONDITION, message);
      }

      used.set(
        id,
        [...usedBy(rip)].map(([text, cidr]) => ({ id, cidr, text })),
      );
      if (rip) rip.excludedPrefixes = rip.excludedPrefixes.filter((p) => !addedKeys.has(keyOf(p)));
      if (rip !== ipc) ipc.excludedPrefixes = original;
      return resp;
    },

    async close(conn, ctx, next) {
      used.delete(conn.id);
      return next.close(conn, ctx);
    },
  };
}

function findConflict(
  ipc: IPContext | undefined,
  requested: readonly string[],
  others: readonly Used[],
): { addr: string; prefix: string; why: string } | undefined {
  if (!ipc) return undefined;
  const excluded: Array<{ cidr: Cidr; text: string; why: string }> = [];
  for (const text of requested) {
    const cidr = parseCidrOrIpCached(text);
    if (cidr) excluded.push({ cidr, text, why: "excluded by the request" });
  }
  for (const u of others) {
    excluded.push({ cidr: u.cidr, text: u.text, why: `in use by this client's connection ${u.id}` });
  }
  for (const addr of [...ipc.srcIpAddrs, ...ipc.dstIpAddrs]) {
    const c = parseCidrOrIpCached(addr);
    if (!c) continue;
    const hit = excluded.find((e) => overlaps(e.cidr, hostCidr(c)));
    if (hit) return { addr, prefix: hit.text, why: hit.why };
  }
  return undefined;
}
