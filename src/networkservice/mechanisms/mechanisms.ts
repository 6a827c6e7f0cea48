// `mechanisms` (server) picks how the incoming leg is plumbed; the client-side elements build the outgoing
// leg's preferences (spec §2.3 step 5).
import { status } from "@grpc/grpc-js";
import { Mechanism } from "../../api/connection.js";
import type { NetworkServiceElement, NetworkServiceNext } from "../../core/chain.js";
import type { CallContext } from "../../core/context.js";
import { StatusError, invalidArgument } from "../../core/errors.js";
import { clientUrl } from "../clienturl/clienturl.js";
import { cls, describe } from "./common.js";

/**
 * Server side: a refresh must keep a supported mechanism; a new request gets the first preference this hop
 * supports, which then runs through that mechanism's own element (completing its parameters).
 */
export function mechanismsServer(handlers: Record<string, NetworkServiceElement>): NetworkServiceElement {
  const supported = Object.keys(handlers);
  const pick = (req: Parameters<NetworkServiceElement["request"]>[0]): Mechanism => {
    const current = req.connection!.mechanism;
    if (current && current.type !== "") {
      if (!handlers[current.type]) {
        throw invalidArgument(
          "connection.mechanism",
          `${describe(current)} is not supported here; supported: ${supported.join(", ")}`,
        );
      }
      return current;
    }
    const chosen = req.mechanismPreferences.find((m) => handlers[m.type]);
    if (!chosen) {
      const offered = req.mechanismPreferences.map(describe).join(", ") || "none";
      throw new StatusError(
        status.INVALID_ARGUMENT,
        `mechanism_preferences: none of the offered mechanisms (${offered}) is supported here; supported: ${supported.join(", ")}`,
      );
    }
    return Mechanism.fromPartial(chosen);
  };
  return {
    name: "mechanisms",
    request(req, ctx, next) {
      const m = pick(req);
      req.connection!.mechanism = m;
      return handlers[m.type]!.request(req, ctx, next);
    },
    close(conn, ctx, next) {
      const h = conn.mechanism ? handlers[conn.mechanism.type] : undefined;
      return h?.close ? h.close(conn, ctx, next) : next.close(conn, ctx);
    },
  };
}

/** A mechanism element that needs nothing beyond being chosen. */
export const passThrough = (name: string): NetworkServiceElement => ({
  name,
  request: (req, ctx, next) => next.request(req, ctx),
});

const outgoingKey = Symbol("mechanismtranslation.outgoing");

/** The mechanism of this hop's outgoing leg, once the next hop accepted it. */
export function outgoingMechanism(ctx: CallContext): Mechanism | undefined {
  return ctx.connMeta(true).get(outgoingKey) as Mechanism | undefined;
}

/**
 * `mechanismtranslation` (client side of a forwarder): the outgoing leg has its own mechanism. Preferences
 * are rebuilt by the mechanism clients after this element; a refresh resends the leg's current mechanism;
 * the response goes back upstream with the incoming leg's mechanism.
 */
export function mechanismTranslationClient(): NetworkServiceElement {
  return {
    name: "mechanismtranslation",
    async request(req, ctx, next) {
      const incoming = req.connection!.mechanism;
      const conn = { ...req.connection!, mechanism: outgoingMechanism(ctx) };
      const out = await next.request({ connection: conn, mechanismPreferences: [] }, ctx);
      if (out.mechanism) ctx.connMeta(true).set(outgoingKey, out.mechanism);
      return { ...out, mechanism: incoming };
    },
    close(conn, ctx, next) {
      return next.close({ ...conn, mechanism: outgoingMechanism(ctx) }, ctx);
    },
  };
}

/** Appends the preference(s) this hop offers on its outgoing leg. */
export function preferenceClient(
  name: string,
  offer: (ctx: CallContext, req: Parameters<NetworkServiceNext["request"]>[0]) => Mechanism[],
): NetworkServiceElement {
  return {
    name,
    request(req, ctx, next) {
      req.mechanismPreferences.push(...offer(ctx, req));
      return next.request(req, ctx);
    },
  };
}

/** `filtermechanisms`: LOCAL preferences only towards unix/inode URLs, REMOTE ones only towards tcp. */
export function filterMechanismsClient(): NetworkServiceElement {
  return {
    name: "filtermechanisms",
    request(req, ctx, next) {
      const url = clientUrl(ctx) ?? "";
      const want = url.startsWith("unix:") || url.startsWith("inode:") ? cls.LOCAL : cls.REMOTE;
      req.mechanismPreferences = req.mechanismPreferences.filter((m) => m.cls === want);
      return next.request(req, ctx);
    },
  };
}
