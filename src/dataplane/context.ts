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

/**
 * An interface named by name, by index, or by both: a link the caller has just looked up, so an operation
 * needs no second lookup and its messages still name it.
 */
export type LinkRef = string | number | KnownLink;

export interface KnownLink {
  readonly name: string;
  readonly index: number;
}

export function linkRefText(ref: LinkRef): string {
  return typeof ref === "number" ? `#${ref}` : typeof ref === "string" ? ref : ref.name;
}

/** The index a reference carries, if it carries one. */
export function linkRefIndex(ref: LinkRef): number | undefined {
  return typeof ref === "number" ? ref : typeof ref === "string" ? undefined : ref.index;
}
