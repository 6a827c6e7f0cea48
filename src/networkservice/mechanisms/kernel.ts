// KERNEL mechanism (spec §1.9): an interface in a network namespace, named by `name` (≤15 chars), the
// namespace given as inode://dev/ino in `inodeURL`.
import type { Mechanism } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { invalidArgument } from "../../core/errors.js";
import { cls, defaultIfName, ifnameMax, kernelParams as P, mechanism, types } from "./common.js";

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
 * an endpoint) puts the endpoint's own namespace into the mechanism it answers with.
 */
export function kernelServer(opts: { ownInodeUrl?: string } = {}): NetworkServiceElement {
  return {
    name: "mechanisms/kernel",
    request(req, ctx, next) {
      const conn = req.connection!;
      const m = conn.mechanism!;
      const name = m.parameters[P.name];
      if (name) checkIfName(name, "mechanism.parameters.name");
      else m.parameters[P.name] = defaultIfName(conn.networkService);
      const inode = m.parameters[P.inodeURL];
      if (inode && !/^(inode:\/\/\d+\/\d+|file:\/\/\/.+)$/.test(inode)) {
        throw invalidArgument(
          "mechanism.parameters.inodeURL",
          `"${inode}" is not inode://<dev>/<ino> or file:///path`,
        );
      }
      if (opts.ownInodeUrl) m.parameters[P.inodeURL] = opts.ownInodeUrl;
      return next.request(req, ctx);
    },
  };
}
