// `begin`: owns each connection's life at this hop. Events for one connection id (Request, refresh, Close,
// and events raised from inside the hop such as a timeout) run one at a time; the last good Connection and
// the per-connection metadata live here; a RESELECT_REQUESTED request first closes what exists downstream;
// a Close for an unknown id is a no-op (forwarders: passed on); a Request that fails on a new connection forgets it.
import { status } from "@grpc/grpc-js";
import { Connection, State } from "../../api/connection.js";
import type { NetworkServiceRequest } from "../../api/networkservice.js";
import type { NetworkServiceElement, NetworkServiceNext } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import type { Logger } from "../../core/log.js";
import { KeyedSerializer } from "../../core/serialize.js";

/** Lets elements raise events on their own connection, serialised with client events (upstream EventFactory). */
export interface EventFactory {
  /** Re-runs Request downstream with the stored connection (a refresh or heal from inside the hop). */
  request(change?: (conn: Connection) => void): Promise<Connection>;
  /** Closes the connection downstream and forgets it. */
  close(): Promise<void>;
}

const eventFactoryKey = Symbol("begin.eventFactory");

export function eventFactory(ctx: CallContext): EventFactory | undefined {
  return ctx.connection?.server.get(eventFactoryKey) as EventFactory | undefined;
}

interface Entry {
  conn?: Connection;
  /** Mechanism preferences of the last request, so that inside-the-hop refreshes can resend them. */
  preferences: NetworkServiceRequest["mechanismPreferences"];
  metadata: ConnectionMetadata;
}

export interface BeginOptions {
  /** Server side sets state UP on success; the client side leaves state as the server returned it. */
  side: "server" | "client";
  log: Logger;
  /**
   * Pass a Close for an unknown id on down the chain instead of ignoring it (default false, as upstream),
   * when this says so for the call. Ignoring is right for any caller: passing it on lets a caller make this
   * hop send Closes for connections it never saw (the chain looks the next hop up by name). A forwarder lets
   * only its own nsmgr do it, so that connections it lost in a restart are closed at their endpoint too.
   */
  closeUnknown?: (ctx: CallContext) => boolean;
}

export class Begin implements NetworkServiceElement {
  readonly name = "begin";
  private readonly entries = new Map<string, Entry>();
  private readonly serial = new KeyedSerializer();
  private next?: NetworkServiceNext;

  constructor(private readonly opts: BeginOptions) {}

  /** Connections this hop holds now (ids as seen by this hop). */
  get size(): number {
    return this.entries.size;
  }

  get(id: string): Connection | undefined {
    return this.entries.get(id)?.conn;
  }

  connections(): Connection[] {
    return [...this.entries.values()].flatMap((e) => (e.conn ? [e.conn] : []));
  }

  request(req: NetworkServiceRequest, ctx: CallContext, next: NetworkServiceNext): Promise<Connection> {
    this.next = next;
    const id = req.connection!.id;
    return this.serial.run(id, async () => {
      let entry = this.entries.get(id);
      const isNew = !entry?.conn;
      if (!entry) {
        entry = { preferences: [], metadata: new ConnectionMetadata() };
        entry.metadata.server.set(eventFactoryKey, this.factory(id));
        this.entries.set(id, entry);
      }
      ctx.connection = entry.metadata;
      const conn = req.connection!;
      if (conn.state === State.RESELECT_REQUESTED && entry.conn) {
        ctx.log.info({ connId: id }, "reselect requested: closing the old downstream connection first");
        // A refused Close (another caller) refuses the reselect too; an unreachable downstream does not.
        await next.close(entry.conn, ctx).catch((err: unknown) => {
          if ((err as { code?: number }).code === status.PERMISSION_DENIED) throw err;
          ctx.log.warn({ connId: id, err }, "close before reselect failed");
        });
        entry.conn = undefined;
        entry.metadata = new ConnectionMetadata();
        entry.metadata.server.set(eventFactoryKey, this.factory(id));
        ctx.connection = entry.metadata;
      } else if (entry.conn) {
        mergeRefresh(conn, entry.conn);
      }
      try {
        const out = await next.request(req, ctx);
        if (this.opts.side === "server") out.state = State.UP;
        // Elements before begin (updatepath) rewrite the returned object for the caller: keep our own copy.
        entry.conn = Connection.fromPartial(out);
        entry.preferences = req.mechanismPreferences;
        return out;
      } catch (err) {
        if (isNew) this.entries.delete(id);
        throw err;
      }
    });
  }

  close(conn: Connection, ctx: CallContext, next: NetworkServiceNext): Promise<void> {
    this.next = next;
    const id = conn.id;
    return this.serial.run(id, async () => {
      const entry = this.entries.get(id);
      if (!entry?.conn) {
        if (this.opts.closeUnknown?.(ctx) && conn.networkServiceEndpointName) {
          this.opts.log.info({ connId: id }, "Close of a connection this hop does not know: passing it on");
          ctx.connection = new ConnectionMetadata();
          await next.close(conn, ctx);
        }
        return;
      }
      ctx.connection = entry.metadata;
      // Close what we built, as we last saw it; every hop mints fresh tokens for the Close on its way. Only
      // a Close that went through is forgotten: a refused one (authorize) leaves the connection as it was.
      await next.close(Connection.fromPartial(entry.conn), ctx);
      if (this.entries.get(id) === entry) this.entries.delete(id);
    });
  }

  /** Closes a connection from inside this hop (downstream, then forgets it), e.g. after the next hop closed it. */
  closeInside(id: string): Promise<void> {
    // Only the connection as it is now: one rebuilt before the close gets its turn is not the one meant.
    const seen = this.entries.get(id)?.conn;
    return this.serial.run(id, async () => {
      const entry = this.entries.get(id);
      if (!entry?.conn || entry.conn !== seen || !this.next) return;
      this.entries.delete(id);
      const ctx = CallContext.background(this.opts.log.child({ connId: id }));
      ctx.connection = entry.metadata;
      await this.next.close(entry.conn, ctx);
    });
  }

  private factory(id: string): EventFactory {
    const bg = (): CallContext => {
      const ctx = CallContext.background(this.opts.log.child({ connId: id }));
      ctx.connection = this.entries.get(id)?.metadata;
      return ctx;
    };
    return {
      request: (change) =>
        this.serial.run(id, async () => {
          const entry = this.entries.get(id);
          if (!entry?.conn || !this.next) throw new Error(`connection ${id} is not established`);
          const conn = Connection.fromPartial(entry.conn);
          change?.(conn);
          const out = await this.next.request(
            { connection: conn, mechanismPreferences: entry.preferences },
            bg(),
          );
          if (this.opts.side === "server") out.state = State.UP;
          entry.conn = Connection.fromPartial(out);
          return out;
        }),
      close: () =>
        this.serial.run(id, async () => {
          const entry = this.entries.get(id);
          if (!entry?.conn || !this.next) return;
          const ctx = bg();
          this.entries.delete(id);
          await this.next.close(entry.conn, ctx);
        }),
    };
  }
}

/**
 * A refresh carries the client's last view of the connection. Keep what the chain produced (mechanism,
 * context) unless the client changed it on purpose.
 */
function mergeRefresh(incoming: Connection, stored: Connection): void {
  incoming.mechanism ??= stored.mechanism;
  incoming.context ??= stored.context;
  if (incoming.networkServiceEndpointName === "")
    incoming.networkServiceEndpointName = stored.networkServiceEndpointName;
  if (incoming.payload === "") incoming.payload = stored.payload;
}

export const beginServer = (
  log: Logger,
  opts: { closeUnknown?: (ctx: CallContext) => boolean } = {},
): Begin => new Begin({ side: "server", log, ...opts });
export const beginClient = (log: Logger): Begin => new Begin({ side: "client", log });
