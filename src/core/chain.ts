// NetworkService chains (design.md §2): every hop is an ordered list of elements. An element does one thing
// on request and undoes it on close, and calls `next` explicitly. A missing close passes straight through.
// The chain ends in a tail that returns the request's connection unchanged.
import type { Connection } from "../api/connection.js";
import type { NetworkServiceRequest } from "../api/networkservice.js";
import type { CallContext } from "./context.js";

export interface NetworkServiceNext {
  request(req: NetworkServiceRequest, ctx: CallContext): Promise<Connection>;
  close(conn: Connection, ctx: CallContext): Promise<void>;
}

export interface NetworkServiceElement {
  /** Upstream element name, logged at debug level on every call so a request can be followed. */
  readonly name: string;
  request(req: NetworkServiceRequest, ctx: CallContext, next: NetworkServiceNext): Promise<Connection>;
  close?(conn: Connection, ctx: CallContext, next: NetworkServiceNext): Promise<void>;
}

const tail: NetworkServiceNext = {
  request: (req) => Promise.resolve(req.connection!),
  close: () => Promise.resolve(),
};

export function chain(elements: NetworkServiceElement[]): NetworkServiceNext {
  let next = tail;
  for (let i = elements.length - 1; i >= 0; i--) next = link(elements[i]!, next);
  return next;
}

function link(el: NetworkServiceElement, next: NetworkServiceNext): NetworkServiceNext {
  return {
    request: (req, ctx) => {
      ctx.log.debug({ element: el.name }, "request");
      return el.request(req, ctx, next);
    },
    close: (conn, ctx) => {
      if (!el.close) return next.close(conn, ctx);
      ctx.log.debug({ element: el.name }, "close");
      return el.close(conn, ctx, next);
    },
  };
}

/** An element as a plain pair of functions, for elements too small to deserve a file of their own. */
export function element(
  name: string,
  request: NetworkServiceElement["request"],
  close?: NetworkServiceElement["close"],
): NetworkServiceElement {
  return close ? { name, request, close } : { name, request };
}
