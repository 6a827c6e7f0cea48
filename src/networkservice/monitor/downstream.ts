// Monitoring the next hops (spec §2.6 propagation): one MonitorConnections stream per next-hop URL, selecting
// every connection that passes through this hop by name. A downstream event updates this hop's view of the
// connection (state, context) and so reaches this hop's own subscribers; losing the stream marks every
// connection through that peer DOWN until it comes back.
import {
  ConnectionEventType,
  MonitorConnectionService,
  State,
  type Connection,
  type ConnectionEvent,
} from "../../api/connection.js";
import type { Logger } from "../../core/log.js";
import type { ClientPool } from "../connect/pool.js";
import type { MonitorStore } from "./monitor.js";

interface Peer {
  ids: Set<string>;
  cancel?: () => void;
  retry?: NodeJS.Timeout;
}

export class DownstreamMonitor {
  private readonly peers = new Map<string, Peer>();
  private closed = false;

  constructor(
    private readonly pool: ClientPool,
    private readonly hopName: string,
    private readonly store: MonitorStore,
    private readonly log: Logger,
    /**
     * The next hop closed a connection on its own (its client namespace went, it timed out): close it here
     * too, so it is cleaned up all the way up. Without it the connection is only marked DOWN.
     */
    private readonly onDeleted?: (id: string) => void,
  ) {}

  track(url: string, connId: string): void {
    let peer = this.peers.get(url);
    if (!peer) {
      this.peers.set(url, (peer = { ids: new Set() }));
      this.subscribe(url, peer);
    }
    peer.ids.add(connId);
  }

  untrack(url: string, connId: string): void {
    const peer = this.peers.get(url);
    if (!peer) return;
    peer.ids.delete(connId);
    if (peer.ids.size === 0) {
      peer.cancel?.();
      clearTimeout(peer.retry);
      this.peers.delete(url);
    }
  }

  close(): void {
    this.closed = true;
    for (const p of this.peers.values()) {
      p.cancel?.();
      clearTimeout(p.retry);
    }
    this.peers.clear();
  }

  private subscribe(url: string, peer: Peer): void {
    const stream = this.pool.get(url).serverStream(MonitorConnectionService.monitorConnections, {
      pathSegments: [{ name: this.hopName, id: "", token: "", expires: undefined, metrics: {} }],
      networkServices: [],
    });
    peer.cancel = () => stream.cancel();
    void (async () => {
      try {
        for await (const ev of stream) this.apply(peer, ev);
      } catch {
        /* handled below */
      }
      if (this.closed || this.peers.get(url) !== peer || peer.ids.size === 0) return;
      this.log.warn(
        { url, connections: peer.ids.size },
        "lost the monitor stream of the next hop: connections DOWN",
      );
      for (const id of peer.ids) this.mark(id, State.DOWN);
      peer.retry = setTimeout(() => this.subscribe(url, peer), 1000);
      peer.retry.unref();
    })();
  }

  private apply(peer: Peer, ev: ConnectionEvent): void {
    for (const down of Object.values(ev.connections)) {
      const ours = down.path?.pathSegments.find((s) => s.name === this.hopName);
      if (!ours || !peer.ids.has(ours.id)) continue;
      if (ev.type === ConnectionEventType.DELETE && this.onDeleted) {
        // A Close this hop sent itself untracked the id first: this one came from below.
        peer.ids.delete(ours.id);
        this.onDeleted(ours.id);
        continue;
      }
      const state = ev.type === ConnectionEventType.DELETE ? State.DOWN : down.state;
      this.mark(ours.id, state, down);
    }
  }

  private mark(id: string, state: State, down?: Connection): void {
    const mine = this.store.get(id);
    if (!mine) return;
    const context = down?.context ?? mine.context;
    if (mine.state === state && JSON.stringify(mine.context) === JSON.stringify(context)) return;
    this.store.update({ ...mine, state, context });
  }
}
