// KERNEL mechanism (spec §1.9): an interface in a network namespace, named by `name` (≤15 chars), the
// namespace given as inode://dev/ino in `inodeURL`. A caller may name its namespace only that way: a file://
// URL would make the forwarder (root) open any path it names. Only this process's own code may put a
// file:// URL there (e.g. for a descriptor it received), and it marks that URL trusted for the call.
import type { Mechanism } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";
import { invalidArgument } from "../../core/errors.js";
import { cls, defaultIfName, ifnameMax, kernelParams as P, mechanism, types } from "./common.js";

const trustedKey = Symbol("kernel.trustedNetns");

/**
 * Marks `url` (a file:// URL our own code put into a mechanism's inodeURL during this call) as not coming
 * from the caller, so the kernel mechanism and the forwarder's data plane accept it.
 */
export function trustNetnsUrl(ctx: CallContext, url: string): void {
  const set = ctx.get<Set<string>>(trustedKey) ?? new Set<string>();
  set.add(url);
  ctx.set(trustedKey, set);
}

/** Whether this process's own code vouched for `url` during this call (trustNetnsUrl). */
export function isTrustedNetnsUrl(ctx: CallContext, url: string): boolean {
  return ctx.get<Set<string>>(trustedKey)?.has(url) ?? false;
}

export function kernelOffer(params: { name?: string; inodeURL?: string }): Mechanism {
  const p: Record<string, string> = {};
  if (params.name) p[P.name] = params.name;
  if (params.inodeURL) p[P.inodeURL] = params.inodeURL;
  return mechanism(cls.LOCAL, types.KERNEL, p);
}

export function checkIfName(name: string, field: string): void {
  if (name.length === 0 || name.length > ifnameMax)
    throw invalidArgument(field, `interface name "${name}" must be 1..${ifnameMax} characters`);
  if (!/^[^\s/:%]+$/.test(name) || name === "." || name === "..")
    throw invalidArgument(field, `interface name "${name}" has characters Linux does not allow`);
}

/**
 * Server side of KERNEL: checks the client's parameters, names the interface if the client did not, and (on
 * an endpoint) puts the endpoint's own namespace into the mechanism it answers with (`ownNetns`).
 */
export function kernelServer(opts: { ownNetns?: string } = {}): NetworkServiceElement {
  return {
    name: "mechanisms/kernel",
    async request(req, ctx, next) {
      const conn = req.connection!;
      const m = conn.mechanism!;
      const name = m.parameters[P.name];
      if (name) checkIfName(name, "mechanism.parameters.name");
      else m.parameters[P.name] = defaultIfName(conn.networkService);
      const inode = m.parameters[P.inodeURL];
      if (inode && !/^inode:\/\/\d{1,20}\/\d{1,20}$/.test(inode)) {
        const trusted = inode.startsWith("file:///") && isTrustedNetnsUrl(ctx, inode);
        if (!trusted) {
          throw invalidArgument(
            "mechanism.parameters.inodeURL",
            inode.startsWith("file:")
              ? `"${inode}" is refused: name the network namespace as inode://<dev>/<ino> (file:// URLs are not accepted from callers)`
              : `"${inode}" is not inode://<dev>/<ino>`,
          );
        }
      }
      if (opts.ownNetns) {
        // Our own namespace as a file:// URL (sendfd passes it on as a descriptor) or inode URL.
        m.parameters[P.inodeURL] = opts.ownNetns;
        if (opts.ownNetns.startsWith("file://")) trustNetnsUrl(ctx, opts.ownNetns);
      }
      return next.request(req, ctx);
    },
  };
}
