// The forwarder's data-plane interface: what a forwarder plugs in to turn the two legs of a connection
// (incoming: client side, outgoing: towards the NSE or the remote forwarder) into kernel state. The control
// plane calls it from the `xconnect` element; the kernel and TF forwarders implement it.
import { status } from "@grpc/grpc-js";
import type { Connection, Mechanism } from "../api/connection.js";
import type { CallContext } from "../core/context.js";
import { StatusError } from "../core/errors.js";
import { DataplaneError, isErrno } from "../dataplane/index.js";

export interface Leg {
  /** The connection as this forwarder sees it (its own id, path, context from the NSE). */
  conn: Connection;
  mechanism: Mechanism;
}

export interface DataPlane {
  readonly name: string;
  /** Mechanism types this data plane can plumb on each leg, in preference order. */
  readonly incoming: string[];
  /** Preferences to offer on the outgoing leg towards a LOCAL (unix) or REMOTE (tcp) next hop. */
  outgoing(kind: "LOCAL" | "REMOTE", conn: Connection): Mechanism[];
  /**
   * Creates or updates the cross-connect. Called after the NSE accepted the request, on first setup and on
   * every refresh; must be idempotent and apply only what changed. Throwing fails the Request.
   */
  apply(incoming: Leg, outgoing: Leg, ctx: CallContext): Promise<void>;
  /** Removes everything `apply` created for this connection. Must not throw for already-removed state. */
  release(incoming: Leg, outgoing: Leg, ctx: CallContext): Promise<void>;
}

/** A data plane that plumbs nothing: for control-plane tests and benchmarks only. */
export function noopDataPlane(opts: { tunnelIp?: string } = {}): DataPlane {
  return {
    name: "noop",
    incoming: ["KERNEL", "VXLAN"],
    outgoing: (kind) =>
      kind === "LOCAL"
        ? [{ cls: "LOCAL", type: "KERNEL", parameters: {} }]
        : [
            {
              cls: "REMOTE",
              type: "VXLAN",
              parameters: { src_ip: opts.tunnelIp ?? "127.0.0.1", src_port: "4789" },
            },
          ],
    apply: () => Promise.resolve(),
    release: () => Promise.resolve(),
  };
}

/**
 * A kernel failure as the gRPC status a client sees (`what` names the connection's data plane): a name or
 * address taken → ALREADY_EXISTS, a bad name or missing namespace → INVALID_ARGUMENT, else INTERNAL.
 */
export function dataplaneStatus(err: unknown, what: string): unknown {
  if (!(err instanceof DataplaneError)) return err;
  const code = isErrno(err, "EEXIST", "EADDRINUSE")
    ? status.ALREADY_EXISTS
    : isErrno(err, "EINVAL", "ENOENT")
      ? status.INVALID_ARGUMENT
      : status.INTERNAL;
  return new StatusError(code, `${what}: ${err.message}`);
}
