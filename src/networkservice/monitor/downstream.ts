// Monitoring the next hops (spec §2.6 propagation): one MonitorConnections stream per next-hop URL, selecting
// every connection that passes through this hop by name. A downstream event updates this hop's view of the
// connection (state, context) and so reaches this hop's own subscribers; losing the stream marks every
// connection through that peer DOWN until it comes back.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  ConnectionEvent,
  ConnectionEventType,
  MonitorConnectionService,
  State,
  type Connection,
} from "../../api/connection.js";
import type { Logger } from "../../core/log.js";
import type { ClientPool } from "../connect/pool.js";
import type { MonitorStore } from "./monitor.js";

interface Peer {
  ids: Set<string>;
  /**
   * Per tracked id, the next hop's path segment (id and token) of the latest response: a DELETE that carries
   * another one is about an earlier incarnation of the id (closed for a reselect that chose the same next
   * hop, and arriving after the new connection was made), not about the current connection.
   */
  incarnation: Map<string, string>;
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

  track(url: string, conn: Connection): void {
    let peer = this.peers.get(url);
    if (!peer) {
      this.peers.set(url, (peer = { ids: new Set(), incarnation: new Map() }));
      this.subscribe(url, peer);
    }
    peer.ids.add(conn.id);
    const next = nextSegment(conn, this.hopName);
    if (next) peer.incarnation.set(conn.id, next);
    else peer.incarnation.delete(conn.id);
  }

  untrack(url: string, connId: string): void {
    const peer = this.peers.get(url);
    if (!peer) return;
    peer.ids.delete(connId);
    peer.incarnation.delete(connId);
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
    // Events arrive undecoded: most are about connections this hop does not track (yet) — the UPDATE of a
    // new connection arrives before the Request's response, the DELETE of a Close after this hop untracked
    // it — and apply() recognises those from the path segments' names and ids alone, without decoding
    // contexts and tokens (most of a hop's monitoring cost).
    const method = {
      ...MonitorConnectionService.monitorConnections,
      responseDeserialize: (b: Buffer): Buffer => b,
    };
    const stream = this.pool.get(url).serverStream(method, {
      pathSegments: [{ name: this.hopName, id: "", token: "", expires: undefined, metrics: {} }],
      networkServices: [],
    });
    peer.cancel = () => stream.cancel();
    void (async () => {
      try {
        for await (const bytes of stream) this.apply(peer, bytes);
      } catch {
        // A stream error, or an event that does not decode (as grpc-js would, end the call).
        stream.cancel();
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

  private apply(peer: Peer, bytes: Buffer): void {
    if (mentionsTracked(bytes, this.hopName, peer.ids) === false) return;
    const ev = ConnectionEvent.decode(bytes);
    for (const down of Object.values(ev.connections)) {
      const ours = down.path?.pathSegments.find((s) => s.name === this.hopName);
      if (!ours || !peer.ids.has(ours.id)) continue;
      if (ev.type === ConnectionEventType.DELETE) {
        const current = peer.incarnation.get(ours.id);
        if (current !== undefined && nextSegment(down, this.hopName) !== current) continue;
      }
      if (ev.type === ConnectionEventType.DELETE && this.onDeleted) {
        // A Close this hop sent itself untracked the id first: this one came from below.
        peer.ids.delete(ours.id);
        peer.incarnation.delete(ours.id);
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

/**
 * Whether a ConnectionEvent's bytes name, in some connection, `hop`'s path segment (the first one of that
 * name, as apply() finds it) with an id in `ids`. Reads only ConnectionEvent.connections (2) → map value (2)
 * → Connection.path (6) → Path.path_segments (2) → PathSegment.name (1) / id (2). Undefined when the bytes
 * do not parse, so that the full decoder reports the error.
 */
export function mentionsTracked(
  bytes: Uint8Array,
  hop: string,
  ids: ReadonlySet<string>,
): boolean | undefined {
  try {
    const r = new BinaryReader(bytes);
    const found = eachMessage(r, r.len, 2, (entryEnd) =>
      eachMessage(r, entryEnd, 2, (connEnd) => {
        // A repeated path would be merged by the decoder, its segments appended in order: the first segment
        // named `hop` decides for this connection.
        const v = eachMessage(r, connEnd, 6, (pathEnd) =>
          eachMessage(r, pathEnd, 2, (segEnd) => {
            const seg = segment(r, segEnd);
            return seg.name === hop ? { found: ids.has(seg.id) } : undefined;
          }),
        );
        // Not one of ours: on to the next connection.
        return v?.found ? v : undefined;
      }),
    );
    return found?.found ?? false;
  } catch {
    return undefined;
  }
}

/** What a walk settled, or undefined to keep walking. */
type Verdict = { found: boolean } | undefined;

/**
 * Walks the fields from the reader's position to `end`; for each length-delimited field `field` calls `visit`
 * with the end of that message (the reader at its first field), skipping every other field. Returns the first
 * verdict a visit gives, or undefined when none did.
 */
function eachMessage(r: BinaryReader, end: number, field: number, visit: (end: number) => Verdict): Verdict {
  while (r.pos < end) {
    const [f, w] = r.tag();
    if (f !== field || w !== WireType.LengthDelimited) {
      r.skip(w, f);
      continue;
    }
    const msgEnd = r.uint32() + r.pos;
    const v = visit(msgEnd);
    if (v) return v;
    r.pos = msgEnd;
  }
  return undefined;
}

/** A PathSegment's name (1) and id (2), the reader at its first field, ending at `end`. */
function segment(r: BinaryReader, end: number): { name: string; id: string } {
  let name = "";
  let id = "";
  while (r.pos < end) {
    const [f, w] = r.tag();
    if (f === 1 && w === WireType.LengthDelimited) name = r.string();
    else if (f === 2 && w === WireType.LengthDelimited) id = r.string();
    else r.skip(w, f);
  }
  return { name, id };
}

/** The path segment after `hop`'s own in `c` (as "id token"), if any. */
function nextSegment(c: Connection, hop: string): string | undefined {
  const segs = c.path?.pathSegments ?? [];
  const i = segs.findIndex((s) => s.name === hop);
  const next = i >= 0 ? segs[i + 1] : undefined;
  return next ? `${next.id} ${next.token}` : undefined;
}
