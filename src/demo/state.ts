// What a demo run made, kept on disk so `nsm demo down` can remove it later — also after the demo crashed —
// and so a second run refuses to trample a running one.
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NETNS_RUN_DIR } from "../dataplane/index.js";

/** One demo at a time: its sockets, logs, databases and state live here. */
export const demoDir = process.env.NSM_DEMO_DIR ?? "/run/nsm-demo";
const stateFile = join(demoDir, "state.json");

/** Every demo namespace is `<prefix>-<name>` with a prefix of this shape (nsmd + 4 hex digits). */
export const demoPrefixPattern = /^nsmd[0-9a-f]{4}-/;

export interface DemoState {
  prefix: string;
  startedAt: string;
  demoPid: number;
  namespaces: string[];
  pids: number[];
  keep: boolean;
}

export function readState(): DemoState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile, "utf8")) as DemoState;
  } catch {
    return undefined;
  }
}

export function writeState(s: DemoState): void {
  writeFileSync(stateFile, JSON.stringify(s, null, 2));
}

/** Demo namespaces present now (by the demo's own prefix shape). */
export function leftoverNamespaces(): string[] {
  try {
    return readdirSync(NETNS_RUN_DIR).filter((n) => demoPrefixPattern.test(n));
  } catch {
    return [];
  }
}

/** Processes started by a demo: their environment carries NSM_DEMO=<prefix>. */
export function leftoverPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, "utf8");
      if (/(^|\0)NSM_DEMO=nsmd[0-9a-f]{4}(\0|$)/.test(env)) out.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Why a new demo must not start, or undefined. */
export function busyReason(): string | undefined {
  const s = readState();
  const ns = leftoverNamespaces();
  if (s && (existsSync(join(NETNS_RUN_DIR, s.namespaces[0] ?? "-")) || ns.length > 0)) {
    return `a demo is already running (prefix ${s.prefix}, started ${s.startedAt}${s.keep ? ", kept with --keep" : ""}): run \`nsm demo down\` first`;
  }
  if (ns.length > 0 || leftoverPids().length > 0) {
    return `leftovers of an earlier demo are present (${ns.length} namespaces, e.g. ${ns[0] ?? "none"}): run \`nsm demo down\` first`;
  }
  return undefined;
}

/** What a demo writes into its directory: only these are removed, then the directory if it is empty. */
const demoEntry =
  /^(state\.json|logs|svid|a1|a2|b1|registry-[ab]\.(db.*|sock)|vnc-[ab]\..*|ports-(a1|a2|b1))$/;

export function removeDemoFiles(): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(demoDir);
  } catch {
    return;
  }
  for (const e of entries) if (demoEntry.test(e)) rmSync(join(demoDir, e), { recursive: true, force: true });
  try {
    rmdirSync(demoDir);
  } catch {
    // not empty: something else lives there too
  }
}
