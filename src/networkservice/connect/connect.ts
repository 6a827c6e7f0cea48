// `connect`: sends the request to the next hop (the URL chosen earlier in the chain) and remembers that URL
// so Close goes to the same place. It is the last element of every client chain.
import { Metadata, status } from "@grpc/grpc-js";
import type { Connection } from "../../api/connection.js";
import { NetworkServiceService } from "../../api/networkservice.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { GrpcClient } from "../../core/client.js";
import type { CallContext } from "../../core/context.js";
import { StatusError, toStatusError } from "../../core/errors.js";
import { clientUrl } from "../clienturl/clienturl.js";
import { markForwarded } from "../trimpath/trimpath.js";
import { clientSpan } from "../../observability/tracing/spans.js";
import type { ClientPool } from "./pool.js";

const urlKey = Symbol("connect.url");
const requestMethod = "networkservice.NetworkService/Request";
const closeMethod = "networkservice.NetworkService/Close";
/** How long a Request waits for a channel that is reconnecting (a little over the maximum backoff, 1 s). */
const reconnectWaitMs = 1500;

/** Produces the per-call metadata (tokens) for a call to `url`; see src/components/security.ts. */
export type CallMetadata = (
  ctx: CallContext | undefined,
  url: string,
  client?: GrpcClient,
) => Promise<Metadata> | Metadata;

/** What an outgoing call needs from the hop's security: tokens, and learning who answered at a URL. */
export interface CallSecurity {
  callMetadata: CallMetadata;
  /** Sees every response, so the next tokens for `url` can name the peer as their audience. */
  learnPeer?(url: string, conn: Connection): void;
}

export interface ConnectOptions {
  pool: ClientPool;
  security?: CallSecurity;
  /** Deadline of one Request when the incoming call has none. */
  requestTimeoutMs?: number;
  /** Called after each successful Request, e.g. to start monitoring the next hop. */
  onConnected?: (url: string, conn: Connection, ctx: CallContext) => void;
  onClosed?: (url: string, conn: Connection) => void;
}

/**
 * Where this call goes next, as `connect` will send it: on a Request the URL chosen for it (else where the
 * connection went last), on a Close where the connection went last.
 */
export function nextHopUrl(ctx: CallContext, closing = false): string | undefined {
  const last = ctx.connection?.client.get(urlKey) as string | undefined;
  return closing ? (last ?? clientUrl(ctx)) : (clientUrl(ctx) ?? last);
}

export function connect(opts: ConnectOptions): NetworkServiceElement {
  const timeout = (ctx: CallContext): number => {
    const left = ctx.deadline ? ctx.deadline.getTime() - Date.now() : Infinity;
    return Math.max(1, Math.min(left, opts.requestTimeoutMs ?? 15_000));
  };
  return {
    name: "connect",
    async request(req, ctx) {
      const meta = ctx.connMeta(true);
      const url = clientUrl(ctx) ?? (meta.get(urlKey) as string | undefined);
      if (!url)
        throw new StatusError(status.INTERNAL, "connect: no next-hop URL was chosen for this request");
      markForwarded(ctx);
      const client = opts.pool.get(url);
      const send = async (): Promise<Connection> => {
        const md = opts.security ? await opts.security.callMetadata(ctx, url, client) : new Metadata();
        const { response } = await clientSpan(ctx, requestMethod, url, req.connection, md, () =>
          client.unary(NetworkServiceService.request, req, {
            metadata: md,
            timeoutMs: timeout(ctx),
            signal: ctx.signal,
          }),
        );
        return response;
      };
      try {
        const response = await send().catch(async (err: unknown) => {
          // A restarted peer is served again within one reconnect backoff (max_reconnect_backoff_ms), but a
          // channel still backing off fails calls at once. When the call never reached the peer, wait for
          // the channel once, briefly, and resend: the peer did not see the first one.
          if (toStatusError(err).code !== status.UNAVAILABLE || client.isReady()) throw err;
          const wait = Math.min(reconnectWaitMs, timeout(ctx) - 1);
          const ready =
            wait > 0 &&
            (await client.waitReady(wait).then(
              () => true,
              () => false,
            ));
          if (!ready) throw err;
          return send();
        });
        meta.set(urlKey, url);
        opts.security?.learnPeer?.(url, response);
        opts.onConnected?.(url, response, ctx);
        return response;
      } catch (err) {
        const e = toStatusError(err);
        throw new StatusError(e.code, `${url}: ${e.details}`);
      }
    },
    async close(conn, ctx) {
      const meta = ctx.connMeta(true);
      const url = (meta.get(urlKey) as string | undefined) ?? clientUrl(ctx);
      if (!url) return;
      markForwarded(ctx);
      meta.delete(urlKey);
      opts.onClosed?.(url, conn);
      const client = opts.pool.get(url);
      try {
        const md = opts.security ? await opts.security.callMetadata(ctx, url, client) : new Metadata();
        await clientSpan(ctx, closeMethod, url, conn, md, () =>
          client.unary(NetworkServiceService.close, conn, { metadata: md, timeoutMs: timeout(ctx) }),
        );
      } catch (err) {
        // Close is best effort: the next hop reclaims state by its own timeout if it never hears this.
        ctx.log.warn({ connId: conn.id, url, err: toStatusError(err).details }, "close downstream failed");
      }
    },
  };
}
