// A connection's state as the dashboard shows it, from what the watched nsmgrs on its path say:
//   up      — every watched nsmgr on the path holds it, UP, on a live stream;
//   down    — no nsmgr holds it UP on a live stream (it is DOWN everywhere, or only unreachable nsmgrs knew it);
//   healing — UP at one nsmgr while another nsmgr of its path has it DOWN, no longer has it (gone), or cannot
//             be asked (its stream broke): part of the path is being repaired, or is about to be.
// An nsmgr that holds the connection but is no longer on its path (a leftover of a reselect) does not count.
import { State, stateToJSON } from "../api/connection.js";
import type { ConnectionState } from "./types.js";

export interface ViewStatus {
  nsmgr: string;
  state: State;
  /** The nsmgr's stream broke: the view is the last thing it said. */
  stale: boolean;
}

export interface Classified {
  state: ConnectionState;
  reason: string;
}

/** UP and REFRESH_REQUESTED (the endpoint asks for a refresh: the path works) count as up. */
export function viewIsUp(s: State): boolean {
  return s === State.UP || s === State.REFRESH_REQUESTED;
}

/**
 * `views`: the connection at the watched nsmgrs of its path. `missing`: watched nsmgrs of its path, on a live
 * stream, that do not hold it.
 */
export function classify(views: ViewStatus[], missing: string[]): Classified {
  const good = views.filter((v) => viewIsUp(v.state) && !v.stale);
  const problems = [
    ...views
      .filter((v) => !viewIsUp(v.state) && !v.stale)
      .map((v) => `${stateToJSON(v.state)} at ${v.nsmgr}`),
    ...views.filter((v) => v.stale).map((v) => `${v.nsmgr} unreachable`),
    ...missing.map((n) => `gone from ${n}`),
  ];
  if (problems.length === 0 && good.length > 0)
    return { state: "up", reason: `UP at ${good.map((v) => v.nsmgr).join(", ")}` };
  if (good.length === 0) return { state: "down", reason: problems.join("; ") || "no nsmgr holds it" };
  return { state: "healing", reason: `${problems.join("; ")}; UP at ${good.map((v) => v.nsmgr).join(", ")}` };
}
