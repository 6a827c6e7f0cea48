// `trimpath`: the hop whose chain made no outgoing call (the endpoint) truncates path segments after its own
// index in the response; hops that forwarded the request keep the full path (spec §2.2).
import type { NetworkServiceElement } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";

const forwardedKey = Symbol("trimpath.forwarded");

/** Called by `connect` when the request leaves this hop. */
export function markForwarded(ctx: CallContext): void {
  ctx.set(forwardedKey, true);
}

export function trimPathServer(): NetworkServiceElement {
  return {
    name: "trimpath",
    async request(req, ctx, next) {
      const index = req.connection!.path!.index;
      const out = await next.request(req, ctx);
      if (!ctx.get<boolean>(forwardedKey) && out.path)
        out.path.pathSegments = out.path.pathSegments.slice(0, index + 1);
      return out;
    },
  };
}
