// Network namespace references as NSM carries them: inode://<dev>/<ino> (spec §1.9, §1.10.4).
import { statSync } from "node:fs";

/** inode URL of the namespace file at `path` (/var/run/netns/X, /proc/<pid>/ns/net, /proc/self/ns/net). */
export function inodeUrlOf(path: string): string {
  const st = statSync(path, { bigint: true });
  return `inode://${st.dev}/${st.ino}`;
}
