// Query-as-template matching (spec §4.3, upstream matchutils): empty query fields are wildcards.
import type { Timestamp } from "../api/google/protobuf/timestamp.js";
import { Match, type NetworkService, type NetworkServiceEndpoint } from "../api/registry.js";

export function matchEndpoint(
  query: NetworkServiceEndpoint | undefined,
  nse: NetworkServiceEndpoint,
): boolean {
  if (!query) return true;
  if (query.name !== "" && query.name !== nse.name) return false;
  for (const s of query.networkServiceNames) if (!nse.networkServiceNames.includes(s)) return false;
  for (const [svc, want] of Object.entries(query.networkServiceLabels)) {
    const have = nse.networkServiceLabels[svc];
    if (!have) return false;
    for (const [k, v] of Object.entries(want.labels)) if (have.labels[k] !== v) return false;
  }
  if (query.expirationTime && !sameSeconds(query.expirationTime, nse.expirationTime)) return false;
  if (query.url !== "" && !nse.url.includes(query.url)) return false;
  return true;
}

export function matchService(query: NetworkService | undefined, ns: NetworkService): boolean {
  if (!query) return true;
  if (query.name !== "" && query.name !== ns.name) return false;
  if (query.payload !== "" && query.payload !== ns.payload) return false;
  if (query.matches.length > 0 && !sameMatches(query.matches, ns.matches)) return false;
  return true;
}

function sameSeconds(a: Timestamp, b: Timestamp | undefined): boolean {
  return b !== undefined && a.seconds === b.seconds;
}

function sameMatches(a: Match[], b: Match[]): boolean {
  if (a.length !== b.length) return false;
  // Deep equality through the canonical encoding; map order differences are normalised by sorting keys.
  return a.every((m, i) => canonical(m) === canonical(b[i]!));
}

function canonical(m: Match): string {
  return JSON.stringify(Match.toJSON(m), (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : 1)))
      : v,
  );
}
