// `clienturl`: where the outgoing request of this hop goes. Set by the element that picked the next hop
// (discoverforwarder, roundrobin, or the NSC's configured nsmgr URL) and read by `connect`.
import type { CallContext } from "../../core/context.js";

const urlKey = Symbol("clienturl");

export function setClientUrl(ctx: CallContext, url: string): void {
  ctx.set(urlKey, url);
}

export function clientUrl(ctx: CallContext): string | undefined {
  return ctx.get<string>(urlKey);
}
