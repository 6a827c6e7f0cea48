// Network namespaces and links for tests, named with a per-run prefix and removed by exactly those names.
// Uses iproute2 (test fixtures only; the product never spawns ip).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";

export function ip(args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export function inNs(ns: string, cmd: string[], timeoutMs = 10_000): { code: number | null; out: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, ...cmd], { encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, out: (r.stdout ?? "") + (r.stderr ?? "") };
}

export function ping(ns: string, dst: string, count = 1): boolean {
  return inNs(ns, ["ping", "-c", String(count), "-W", "1", "-i", "0.2", dst]).code === 0;
}

/** Links in a namespace other than lo, as "name@kind" strings. */
export function links(ns: string): string[] {
  const out = ip(["-n", ns, "-o", "-d", "link", "show"]);
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.split(": ")[1]!.split("@")[0]!)
    .filter((n) => n !== "lo");
}

export class Netns {
  /** Short enough that link names built from it stay within 15 characters. */
  readonly prefix: string;
  private readonly made: string[] = [];

  constructor(stem = "nsmt") {
    this.prefix = `${stem}${randomBytes(2).toString("hex")}`;
  }

  /** Creates namespace `<prefix>-<name>` with lo up; returns its name. */
  add(name: string): string {
    const ns = `${this.prefix}-${name}`;
    ip(["netns", "add", ns]);
    this.made.push(ns);
    ip(["-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** A veth between two namespaces with addresses: the underlay between two nodes. */
  wire(a: string, aAddr: string, b: string, bAddr: string, tag = ""): void {
    const an = `${this.prefix}${tag}a`;
    const bn = `${this.prefix}${tag}b`;
    ip(["-n", a, "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b]);
    ip(["-n", a, "addr", "add", aAddr, "dev", an]);
    ip(["-n", b, "addr", "add", bAddr, "dev", bn]);
    ip(["-n", a, "link", "set", an, "up"]);
    ip(["-n", b, "link", "set", bn, "up"]);
  }

  /** The namespaces this run made and has not deleted yet. */
  get names(): string[] {
    return [...this.made];
  }

  path(ns: string): string {
    return `/var/run/netns/${ns}`;
  }

  /** Deletes exactly the namespaces this run made (their links go with them). */
  cleanup(): void {
    for (const ns of this.made.reverse()) {
      try {
        ip(["netns", "del", ns]);
      } catch {
        /* already gone */
      }
    }
    this.made.length = 0;
  }

  /** Namespaces of this run still present (should be none after cleanup). */
  leftovers(): string[] {
    return ip(["netns", "list"])
      .split("\n")
      .map((l) => l.split(" ")[0]!)
      .filter((n) => n.startsWith(this.prefix));
  }
}
