// Per-namespace sysctls (/proc/sys/net is per network namespace: the file must be opened from inside it).
import { writeFileSync } from "node:fs";
import type { NsContext } from "./context.js";
import { DataplaneError } from "./errors.js";
import { inNetns } from "./netns.js";

/** Writes `value` to /proc/sys/`key` (e.g. "net/ipv4/ip_forward") inside `ns`. */
export function writeSysctl(ns: NsContext, key: string, value: string): void {
  if (!/^net\/[\w./-]+$/.test(key) || key.includes("..")) {
    throw DataplaneError.of(ns.ctx("sysctl", key), "EINVAL", "only net/… sysctls are per namespace");
  }
  const ctx = ns.ctx("sysctl", `${key}=${value}`);
  inNetns(ns.fd, ctx, () => {
    try {
      writeFileSync(`/proc/sys/${key}`, value);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code === "ENOENT" ? "ENOENT" : "EACCES";
      throw DataplaneError.of(ctx, code, (err as Error).message);
    }
  });
}
