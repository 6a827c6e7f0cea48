// Small registry chain elements, each doing one thing (upstream names).
import type { CallContext } from "../core/context.js";
import { msToTimestamp, timestampToMs } from "../core/time.js";
import { tokenFromMetadata } from "../security/token.js";
import { ownTokenExpiry } from "./security.js";
import {
  validateEndpoint,
  validateEndpointQuery,
  validateNetworkService,
  validateServiceQuery,
} from "./validate.js";
import type { NSEServer, NSServer } from "./types.js";

/** Rejects malformed input with INVALID_ARGUMENT before anything else sees it. */
export function validateNSE(): NSEServer {
  return {
    name: "validate",
    register: (nse, ctx, next) => (validateEndpoint(nse), next.register(nse, ctx)),
    // Unregister of a name nobody holds, the empty name included, is a no-op, not an error (upstream).
    unregister: (nse, ctx, next) => {
      validateEndpoint({ ...nse, url: "" }, false);
      return next.unregister(nse, ctx);
    },
    find: (q, ctx, stream, next) => (validateEndpointQuery(q), next.find(q, ctx, stream)),
  };
}

export function validateNS(): NSServer {
  return {
    name: "validate",
    register: (ns, ctx, next) => (validateNetworkService(ns), next.register(ns, ctx)),
    unregister: (ns, ctx, next) => (validateNetworkService(ns, false), next.unregister(ns, ctx)),
    find: (q, ctx, stream, next) => (validateServiceQuery(q), next.find(q, ctx, stream)),
  };
}

/** `setpayload`: a NetworkService registered without a payload is an IP service (upstream default). */
export function setPayload(): NSServer {
  return {
    name: "setpayload",
    register: (ns, ctx, next) => next.register(ns.payload === "" ? { ...ns, payload: "IP" } : ns, ctx),
  };
}

/**
 * `expire` (server side; upstream registry `expire`): expiration_time = min(now + period, the expiry of this
 * hop's own token in the registration path, the expiry of the caller's token). A client may ask for less,
 * never for more. The memory element removes the record at that time, with a deleted event.
 */
export function expire(periodMs: number): NSEServer {
  return {
    name: "expire",
    register: (nse, ctx, next) => {
      let limit = Date.now() + periodMs;
      const own = ownTokenExpiry(ctx);
      if (own) limit = Math.min(limit, own.getTime());
      const caller = callerTokenExpiry(ctx);
      if (caller) limit = Math.min(limit, caller.getTime());
      const requested = nse.expirationTime ? timestampToMs(nse.expirationTime) : Infinity;
      return next.register({ ...nse, expirationTime: msToTimestamp(Math.min(requested, limit)) }, ctx);
    },
  };
}

/** When the caller's token expires (`nsm-client-token-expires`, else its `exp`); undefined without one. */
function callerTokenExpiry(ctx: CallContext): Date | undefined {
  try {
    return tokenFromMetadata(ctx.metadata)?.expires;
  } catch {
    return undefined; // a token with no time at all: updatetoken refuses it
  }
}
