// MonitorScopeSelector matching (spec §2.6): network_services empty = any, else the connection's service must
// be listed; path_segments empty = any, else they must match a contiguous run of the connection's segments,
// comparing name/id/token only where the selector sets them.
import type { Connection, MonitorScopeSelector, PathSegment } from "../../api/connection.js";

export function matchesSelector(conn: Connection, sel: MonitorScopeSelector): boolean {
  if (sel.networkServices.length > 0 && !sel.networkServices.includes(conn.networkService)) return false;
  const want = sel.pathSegments;
  if (want.length === 0) return true;
  const have = conn.path?.pathSegments ?? [];
  for (let start = 0; start + want.length <= have.length; start++) {
    if (want.every((w, i) => segmentMatches(have[start + i]!, w))) return true;
  }
  return false;
}

function segmentMatches(have: PathSegment, want: PathSegment): boolean {
  return (
    (want.name === "" || want.name === have.name) &&
    (want.id === "" || want.id === have.id) &&
    (want.token === "" || want.token === have.token)
  );
}
