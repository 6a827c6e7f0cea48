// `monitor`: this hop's MonitorConnections (spec §2.6). Successful Requests publish UPDATE, Closes publish
// DELETE; a subscriber first gets INITIAL_STATE_TRANSFER with every matching connection. Events raised
// downstream (a DOWN from the forwarder because the NSE died) are fed in through `update` by the hop's
// downstream monitor, so they reach the hop's own subscribers.
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
import { matchesSelector } from "./selector.js";

interface Subscriber {
  selector: MonitorScopeSelector;
  sink: StreamSink<ConnectionEvent>;
}

export class MonitorStore {
  private readonly conns = new Map<string, Connection>();
  private readonly subscribers = new Set<Subscriber>();

  get(id: string): Connection | undefined {
    return this.conns.get(id);
  }

  all(): Connection[] {
    return [...this.conns.values()];
  }

  update(conn: Connection): void {
    const copy = Connection.fromPartial(conn);
    this.conns.set(copy.id, copy);
    this.publish(ConnectionEventType.UPDATE, copy);
  }

  delete(conn: Connection): void {
    const stored = this.conns.get(conn.id);
    if (!stored) return;
    this.conns.delete(conn.id);
    this.publish(ConnectionEventType.DELETE, { ...stored, state: State.DOWN });
  }

  /** Streams INITIAL_STATE_TRANSFER then every change, until `signal` aborts. */
  subscribe(
    selector: MonitorScopeSelector,
    sink: StreamSink<ConnectionEvent>,
    signal: AbortSignal,
  ): Promise<void> {
    const initial: Record<string, Connection> = {};
    for (const c of this.conns.values()) if (matchesSelector(c, selector)) initial[c.id] = c;
    sink.send({ type: ConnectionEventType.INITIAL_STATE_TRANSFER, connections: initial });
    const sub: Subscriber = { selector, sink };
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

  private publish(type: ConnectionEventType, conn: Connection): void {
    let bytes: Uint8Array | undefined;
    for (const s of this.subscribers) {
      if (!matchesSelector(conn, s.selector)) continue;
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
      store.update(out);
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

export function monitorConnectionService(store: MonitorStore, log: Logger): RegisteredService {
  const def = MonitorConnectionService;
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
        (sel: MonitorScopeSelector, ctx, sink: StreamSink<ConnectionEvent>) =>
          store.subscribe(sel, sink, ctx.signal),
      ),
    },
  };
}
