// Endpoint selection (spec §4.3): which registered endpoints may serve a client of a NetworkService, given
// the client's labels. Used by the forwarder's discover and by nsmgr's netsvcmonitor.
import type { NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import { isSubset } from "./template.js";

export function selectEndpoints(
  ns: NetworkService,
  clientLabels: Record<string, string>,
  nses: NetworkServiceEndpoint[],
): NetworkServiceEndpoint[] {
  if (ns.matches.length === 0) return nses;
  for (const match of ns.matches) {
    if (!isSubset(clientLabels, match.sourceSelector, clientLabels)) continue;
    const candidates: NetworkServiceEndpoint[] = [];
    const seen = new Set<string>();
    for (const route of match.routes) {
      for (const nse of nses) {
        if (seen.has(nse.name)) continue;
        if (isSubset(nse.networkServiceLabels[ns.name]?.labels, route.destinationSelector, clientLabels)) {
          candidates.push(nse);
          seen.add(nse.name);
        }
      }
    }
    if (match.fallthrough && candidates.length === 0) continue;
    if (match.metadata && match.routes.length === 0 && candidates.length === 0) return nses;
    return candidates;
  }
  return [];
}

/** Drops endpoints whose registration has expired (a registry may not have swept them yet). */
export function liveEndpoints(nses: NetworkServiceEndpoint[], nowMs = Date.now()): NetworkServiceEndpoint[] {
  return nses.filter(
    (n) => !n.expirationTime || n.expirationTime.seconds * 1000 + n.expirationTime.nanos / 1e6 > nowMs,
  );
}
