// nftables: the one netfilter front end here. Rule sets are replaced a whole table at a time with one
// `nft -f -` transaction (atomic: packets see the old table or the new one, never half). This spawns `nft`
// per change: only the TF emulator uses it, on port and floating-IP changes, never per packet or per request.
import { spawnSync } from "node:child_process";
import type { NsContext } from "./context.js";
import { DataplaneError } from "./errors.js";
import { inNetns } from "./netns.js";

/** Table families used here: `bridge` filters frames on a bridge (the TF emulator's per-VN L2). */
export type NftFamily = "ip" | "ip6" | "inet" | "bridge";

function run(ns: NsContext, table: string, script: string): void {
  const ctx = ns.ctx("nft", table);
  // The child inherits the namespace of the thread that forks it.
  const r = inNetns(ns.fd, ctx, () =>
    spawnSync("nft", ["-f", "-"], { input: script, encoding: "utf8", timeout: 10_000 }),
  );
  if (r.error)
    throw DataplaneError.of(ctx, "ENOENT", `cannot run nft (install nftables): ${r.error.message}`);
  if (r.status !== 0) throw DataplaneError.of(ctx, "EINVAL", `nft refused the table: ${r.stderr.trim()}`);
}

/** Replaces table `<family> <name>` in `ns` with `body` (the text inside `table … { }`). */
export function replaceNftTable(ns: NsContext, family: NftFamily, name: string, body: string): void {
  const t = `${family} ${name}`;
  run(ns, t, `table ${t}\ndelete table ${t}\ntable ${t} {\n${body}\n}\n`);
}

/** Deletes table `<family> <name>` in `ns` if it exists. */
export function deleteNftTable(ns: NsContext, family: NftFamily, name: string): void {
  const t = `${family} ${name}`;
  run(ns, t, `table ${t}\ndelete table ${t}\n`);
}
