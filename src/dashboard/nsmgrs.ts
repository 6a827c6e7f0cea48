// Which nsmgrs the dashboard watches: the ones given (--nsmgr-url, each `url` or `name=url`), plus — with
// discovery on — every nsmgr the registry names as the registrar of a forwarder or endpoint, at the public URL
// it registered them with, unless a given URL already covers it (same name or same URL). A given name lets a
// unix socket stand for an nsmgr whose public URL this host cannot reach.
import { parseEndpoint } from "../core/url.js";
import type { RegisteredNsmgr } from "./records.js";

export interface NsmgrTarget {
  url: string;
  name?: string;
}

/** Parses a comma-separated list of `url` or `name=url`; the error names `flag`. */
export function parseNsmgrTargets(text: string, flag: string): NsmgrTarget[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((item) => {
      const eq = item.indexOf("=");
      const scheme = item.indexOf("://");
      const named = eq > 0 && (scheme < 0 || eq < scheme);
      const url = named ? item.slice(eq + 1) : item;
      const name = named ? item.slice(0, eq) : undefined;
      checkUrl(url, flag);
      return name ? { url, name } : { url };
    });
}

/** Refuses anything but tcp://host:port and unix:///path, naming `flag`. */
export function checkUrl(url: string, flag: string): void {
  try {
    parseEndpoint(url, flag);
  } catch {
    throw new Error(`${flag}: "${url}" is not tcp://host:port or unix:///absolute/path`);
  }
}

/**
 * The registry's nsmgrs that no given target covers. `given` carries each given target's name as far as it
 * is known (given, or learnt from its connections).
 */
export function discoveredTargets(registered: RegisteredNsmgr[], given: NsmgrTarget[]): NsmgrTarget[] {
  const names = new Set(given.flatMap((g) => (g.name ? [g.name] : [])));
  const urls = new Set(given.map((g) => g.url));
  return registered
    .filter((r) => !names.has(r.name) && !urls.has(r.publicUrl))
    .filter((r) => isDialable(r.publicUrl))
    .map((r) => ({ url: r.publicUrl, name: r.name }));
}

function isDialable(url: string): boolean {
  try {
    parseEndpoint(url);
    return true;
  } catch {
    return false;
  }
}
