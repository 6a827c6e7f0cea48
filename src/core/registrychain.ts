// Registry chains: the same shape as upstream's registry servers. Each element may implement register, find
// and unregister; a missing method passes the call straight to the next element. The chain ends in a tail
// that returns the item unchanged, so the last real element (a store) decides what is stored.
import type { CallContext } from "./context.js";

/** The stream a Find writes to. A pre-encoded message (Uint8Array) is sent as is: encode once, fan out. */
export interface FindStream<R> {
  send(response: R | Uint8Array): void;
}

export interface RegistryNext<T, Q, R> {
  register(item: T, ctx: CallContext): Promise<T>;
  find(query: Q, ctx: CallContext, stream: FindStream<R>): Promise<void>;
  unregister(item: T, ctx: CallContext): Promise<void>;
}

export interface RegistryServer<T, Q, R> {
  /** Upstream element name, used in debug logs. */
  readonly name: string;
  register?(item: T, ctx: CallContext, next: RegistryNext<T, Q, R>): Promise<T>;
  find?(query: Q, ctx: CallContext, stream: FindStream<R>, next: RegistryNext<T, Q, R>): Promise<void>;
  unregister?(item: T, ctx: CallContext, next: RegistryNext<T, Q, R>): Promise<void>;
}

/** Builds a chain; element i calls element i+1 through the `next` it is given. */
export function registryChain<T, Q, R>(elements: RegistryServer<T, Q, R>[]): RegistryNext<T, Q, R> {
  const at = (i: number): RegistryNext<T, Q, R> => {
    if (i >= elements.length) {
      return {
        register: (item) => Promise.resolve(item),
        find: () => Promise.resolve(),
        unregister: () => Promise.resolve(),
      };
    }
    const el = elements[i]!;
    let nextCache: RegistryNext<T, Q, R> | undefined;
    const next = (): RegistryNext<T, Q, R> => (nextCache ??= at(i + 1));
    return {
      register: (item, ctx) => {
        if (!el.register) return next().register(item, ctx);
        ctx.log.debug({ element: el.name }, "register");
        return el.register(item, ctx, next());
      },
      find: (query, ctx, stream) => {
        if (!el.find) return next().find(query, ctx, stream);
        ctx.log.debug({ element: el.name }, "find");
        return el.find(query, ctx, stream, next());
      },
      unregister: (item, ctx) => {
        if (!el.unregister) return next().unregister(item, ctx);
        ctx.log.debug({ element: el.name }, "unregister");
        return el.unregister(item, ctx, next());
      },
    };
  };
  return at(0);
}

/** A Find response as a message, whether it arrived decoded or as fan-out bytes. */
export function asMessage<R>(response: R | Uint8Array, codec: { decode(bytes: Uint8Array): R }): R {
  return response instanceof Uint8Array ? codec.decode(response) : response;
}
