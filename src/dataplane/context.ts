// What every object family (link, addr, route, neigh) needs from the namespace it works in.
import type { OpContext } from "./errors.js";
import type { RtnlSocket } from "./nl/socket.js";

export interface NsContext {
  /** The reference the namespace was opened with (path or URL): used in error messages. */
  readonly label: string;
  /** inode://dev/ino of the namespace. */
  readonly inodeUrl: string;
  /** The namespace's rtnetlink socket (reopened transparently if the previous one failed). */
  readonly rtnl: RtnlSocket;
  /** An open fd of the namespace file, for IFLA_NET_NS_FD (valid until the handle is closed). */
  readonly fd: number;
  /** Builds the error context for an operation in this namespace. */
  ctx(op: string, object: string): OpContext;
}

/** An interface named by name or by index. */
export type LinkRef = string | number;

export function linkRefText(ref: LinkRef): string {
  return typeof ref === "number" ? `#${ref}` : ref;
}
