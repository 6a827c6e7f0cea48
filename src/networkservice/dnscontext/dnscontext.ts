// `dnscontext` (endpoint): hands the endpoint's DNS configuration (servers and search domains) to its
// clients in connection.context.dns_context, without duplicating entries on refresh.
import type { DNSConfig } from "../../api/connectioncontext.js";
import { ConnectionContext, DNSContext } from "../../api/connectioncontext.js";
import type { NetworkServiceElement } from "../../core/chain.js";

/** Parses upstream's NSM_DNS_CONFIGS JSON: [{"dns_server_ips":[…],"search_domains":[…]}]. */
export function parseDnsConfigs(json: string): DNSConfig[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`DNS configs: not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw))
    throw new Error("DNS configs: expected a JSON array of {dns_server_ips, search_domains}");
  return raw.map((c) => DNSContext.fromJSON({ configs: [c] }).configs[0]!);
}

export function dnsContextServer(configs: DNSConfig[]): NetworkServiceElement {
  const key = (c: DNSConfig): string => JSON.stringify([c.dnsServerIps, c.searchDomains]);
  return {
    name: "dnscontext",
    request(req, ctx, next) {
      if (configs.length > 0) {
        const conn = req.connection!;
        conn.context ??= ConnectionContext.fromPartial({});
        const dns = (conn.context.dnsContext ??= DNSContext.fromPartial({}));
        const have = new Set(dns.configs.map(key));
        for (const c of configs) if (!have.has(key(c))) dns.configs.push(structuredClone(c));
      }
      return next.request(req, ctx);
    },
  };
}
