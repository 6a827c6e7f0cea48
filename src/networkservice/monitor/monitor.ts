// `monitor`: this hop's MonitorConnections (spec §2.6). Successful Requests publish UPDATE, Closes publish
// DELETE; a subscriber first gets INITIAL_STATE_TRANSFER with every matching connection. Events raised
// downstream (a DOWN from the forwarder because the NSE died) are fed in through `update` by the hop's
// downstream monitor, so they reach the hop's own subscribers. Each connection remembers who requested it
// (its owner), so that authmonitor shows a caller only its own; each identity may hold only so many streams.
import {
  ConnectionEvent,
  ConnectionEventType,
  MonitorConnectionService,
  State,
  Connection,
  type MonitorScopeSelector,
} from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { RegisteredService } from "../../core/grpc.js";
import { passEncoded, serverStreamHandler, type StreamSink } from "../../core/handlers.js";
import type { Logger } from "../../core/log.js";
import { IdentityQuota } from "../../core/quota.js";
import { callerId } from "../../security/caller.js";
import { authMonitor, type MonitorFilter } from "../authmonitor/authmonitor.js";
import { matchesSelector } from "./selector.js";

export type { MonitorFilter };

interface Subscriber {
  selector: MonitorScopeSelector;
  sink: StreamSink<ConnectionEvent>;
  filter: MonitorFilter | undefined;
}

export class MonitorStore {
  private readonly conns = new Map<string, Connection>();
  /** Connection id → the identity whose Request made it (callerId), for authmonitor. */
  private readonly owners = new Map<string, string>();
  private readonly subscribers = new Set<Subscriber>();

  get(id: string): Connection | undefined {
    return this.conns.get(id);
  }

  all(): Connection[] {
    return [...this.conns.values()];
  }

  /** Who requested connection `id` through this hop; undefined when unknown (e.g. no identity). */
  ownerOf(id: string): string | undefined {
    return this.owners.get(id);
  }

  /** Stores and publishes a connection; `owner` (its caller's identity) is kept until a new one is given. */
  update(conn: Connection, owner?: string): void {
    const copy = Connection.fromPartial(conn);
    this.conns.set(copy.id, copy);
    if (owner !== undefined) this.owners.set(copy.id, owner);
    this.publish(ConnectionEventType.UPDATE, copy);
  }

  delete(conn: Connection): void {
    const stored = this.conns.get(conn.id);
    if (!stored) return;
    this.conns.delete(conn.id);
    this.publish(ConnectionEventType.DELETE, { ...stored, state: State.DOWN });
    this.owners.delete(conn.id);
  }

  /**
   * Streams INITIAL_STATE_TRANSFER then every change, until `signal` aborts. With a `filter`, only the
   * connections it lets through, in the snapshot and in events.
   */
  subscribe(
    selector: MonitorScopeSelector,
    sink: StreamSink<ConnectionEvent>,
    signal: AbortSignal,
    filter?: MonitorFilter,
  ): Promise<void> {
    const initial: Record<string, Connection> = {};
    for (const c of this.conns.values())
      if (matchesSelector(c, selector) && this.visible(filter, c)) initial[c.id] = c;
    sink.send({ type: ConnectionEventType.INITIAL_STATE_TRANSFER, connections: initial });
    const sub: Subscriber = { selector, sink, filter };
    this.subscribers.add(sub);
    return new Promise((resolve) => {
      const done = (): void => {
        this.subscribers.delete(sub);
        resolve();
      };
      if (signal.aborted) done();
      else signal.addEventListener("abort", done, { once: true });
    });
  }

  private visible(filter: MonitorFilter | undefined, conn: Connection): boolean {
    return filter === undefined || filter(conn, this.owners.get(conn.id));
  }

  private publish(type: ConnectionEventType, conn: Connection): void {
    let bytes: Uint8Array | undefined;
    for (const s of this.subscribers) {
      if (!matchesSelector(conn, s.selector) || !this.visible(s.filter, conn)) continue;
      bytes ??= ConnectionEvent.encode({ type, connections: { [conn.id]: conn } }).finish();
      s.sink.send(bytes);
    }
  }
}

export function monitorServer(store: MonitorStore): NetworkServiceElement {
  return {
    name: "monitor",
    async request(req, ctx, next) {
      let out: Connection;
      try {
        out = await next.request(req, ctx);
      } catch (err) {
        // A failed Request on an established connection is news for its watchers (spec §2.6).
        const stored = store.get(req.connection!.id);
        if (stored) store.update({ ...stored, state: State.DOWN });
        throw err;
      }
      // The owner is whoever asked from outside; events from inside this hop (refresh, heal) keep it.
      store.update(out, ctx.internal ? undefined : callerId(ctx));
      return out;
    },
    async close(conn, ctx, next) {
      try {
        await next.close(conn, ctx);
      } finally {
        store.delete(conn);
      }
    },
  };
}

/** MonitorConnections streams one identity may hold open at once on a hop. */
export const defaultMaxMonitorStreamsPerIdentity = 32;

export interface MonitorServiceOptions {
  /**
   * authmonitor: a caller sees only the connections it requested, and one without an identity is refused
   * (default true).
   */
  authorize?: boolean;
  /** Identities that see every connection despite authmonitor (operators' tools); default none. */
  seeAll?: readonly string[];
  /** Concurrent streams per identity (default defaultMaxMonitorStreamsPerIdentity). */
  maxStreamsPerIdentity?: number;
}

export function monitorConnectionService(
  store: MonitorStore,
  log: Logger,
  opts: MonitorServiceOptions = {},
): RegisteredService {
  const def = MonitorConnectionService;
  const authorize = opts.authorize ?? true;
  const streams = new IdentityQuota(
    opts.maxStreamsPerIdentity ?? defaultMaxMonitorStreamsPerIdentity,
    "open MonitorConnections streams",
    "maxStreamsPerIdentity",
  );
  return {
    name: "connection.MonitorConnection",
    definition: {
      ...def,
      monitorConnections: {
        ...def.monitorConnections,
        responseSerialize: passEncoded(def.monitorConnections.responseSerialize),
      },
    },
    implementation: {
      monitorConnections: serverStreamHandler(
        log,
        "MonitorConnections",
        async (sel: MonitorScopeSelector, ctx, sink: StreamSink<ConnectionEvent>) => {
          const filter = authorize ? authMonitor(ctx, opts.seeAll) : undefined;
          const release = streams.acquire(callerId(ctx) ?? "");
          try {
            await store.subscribe(sel, sink, ctx.signal, filter);
          } finally {
            release();
          }
        },
      ),
    },
  };
}
