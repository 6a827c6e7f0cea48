// `tf/vm-ifname` (TF forwarder, before the request leaves for the endpoint): tells the tf-vn endpoint the
// client's interface name, which it records in the VMI's `interface` annotation as kube-manager does. The
// endpoint cannot see it otherwise: each hop has its own mechanism.
import { ConnectionContext } from "../../api/connectioncontext.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { kernelParams as K } from "../../networkservice/mechanisms/common.js";
import { tfKeys } from "./keys.js";

export function tfVmIfnameClient(): NetworkServiceElement {
  return {
    name: "tf/vm-ifname",
    request(req, ctx, next) {
      const conn = req.connection!;
      const name = conn.mechanism?.parameters[K.name];
      if (name) {
        conn.context = ConnectionContext.fromPartial(conn.context ?? {});
        conn.context.extraContext[tfKeys.vmIfname] = name;
      }
      return next.request(req, ctx);
    },
    close: (conn, ctx, next) => next.close(conn, ctx),
  };
}
