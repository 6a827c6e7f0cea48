// mentionsTracked: the partial read of a ConnectionEvent agrees with decoding it and looking up the hop's
// first path segment, as DownstreamMonitor.apply does.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Connection, ConnectionEvent, ConnectionEventType } from "../../api/connection.js";
import { rootLogger } from "../../core/log.js";
import type { ClientPool } from "../connect/pool.js";
import { DownstreamMonitor, mentionsTracked } from "./downstream.js";
import { MonitorStore } from "./monitor.js";

function conn(id: string, segs: [string, string][]): Connection {
  return Connection.fromPartial({
    id,
    context: { ipContext: { srcIpAddrs: ["10.0.0.1/32"], excludedPrefixes: ["10.1.0.0/16"] } },
    path: {
      index: 1,
      pathSegments: segs.map(([name, sid]) => ({ name, id: sid, token: "t.o.k" })),
    },
    labels: { a: "b" },
  });
}

function bytes(...conns: Connection[]): Uint8Array {
  const connections: Record<string, Connection> = {};
  for (const c of conns) connections[c.id] = c;
  return ConnectionEvent.encode({ type: ConnectionEventType.UPDATE, connections }).finish();
}

/** What apply() concludes from the decoded event. */
function decoded(b: Uint8Array, hop: string, ids: Set<string>): boolean {
  return Object.values(ConnectionEvent.decode(b).connections).some((c) => {
    const ours = c.path?.pathSegments.find((s) => s.name === hop);
    return ours !== undefined && ids.has(ours.id);
  });
}

describe("mentionsTracked", () => {
  const cases: [string, Uint8Array, string, Set<string>][] = [
    [
      "tracked id",
      bytes(
        conn("x", [
          ["nsc", "1"],
          ["nsmgr", "m1"],
          ["fwd", "f1"],
        ]),
      ),
      "nsmgr",
      new Set(["m1"]),
    ],
    [
      "untracked id",
      bytes(
        conn("x", [
          ["nsc", "1"],
          ["nsmgr", "m1"],
        ]),
      ),
      "nsmgr",
      new Set(["m2"]),
    ],
    [
      "hop absent",
      bytes(
        conn("x", [
          ["nsc", "1"],
          ["fwd", "m1"],
        ]),
      ),
      "nsmgr",
      new Set(["m1"]),
    ],
    [
      "first segment of the name counts",
      bytes(
        conn("x", [
          ["nsmgr", "a"],
          ["nsmgr", "m1"],
        ]),
      ),
      "nsmgr",
      new Set(["m1"]),
    ],
    [
      "second connection tracked",
      bytes(conn("x", [["nsmgr", "a"]]), conn("y", [["nsmgr", "b"]])),
      "nsmgr",
      new Set(["b"]),
    ],
    ["no connections", bytes(), "nsmgr", new Set(["m1"])],
    ["empty id tracked", bytes(conn("x", [["nsmgr", ""]])), "nsmgr", new Set([""])],
  ];
  for (const [what, b, hop, ids] of cases) {
    it(what, () => assert.equal(mentionsTracked(b, hop, ids), decoded(b, hop, ids)));
  }
  it("is undefined on bytes that do not parse", () => {
    assert.equal(mentionsTracked(Uint8Array.from([0x12, 0x7f, 0x01]), "nsmgr", new Set()), undefined);
  });
});

describe("DownstreamMonitor: DELETE events from below", () => {
  /** A pool whose one stream yields the events pushed with `emit`, as the next hop's monitor would. */
  function fakePool(): { pool: ClientPool; emit: (ev: Uint8Array) => void } {
    const queue: Uint8Array[] = [];
    let wake: (() => void) | undefined;
    const stream = {
      cancel: () => undefined,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length > 0) yield Buffer.from(queue.shift()!);
          await new Promise<void>((r) => (wake = r));
        }
      },
    };
    const pool = { get: () => ({ serverStream: () => stream }) } as unknown as ClientPool;
    return {
      pool,
      emit: (ev) => {
        queue.push(ev);
        wake?.();
      },
    };
  }
  const downstreamConn = (token: string): Connection =>
    Connection.fromPartial({
      // As the next hop answers this hop: with this hop's id.
      id: "m1",
      path: {
        index: 1,
        pathSegments: [
          { name: "nsmgr", id: "m1", token: "a" },
          { name: "fwd", id: "f1", token },
        ],
      },
    });
  const deleted = (c: Connection): Uint8Array =>
    ConnectionEvent.encode({ type: ConnectionEventType.DELETE, connections: { [c.id]: c } }).finish();

  it("a DELETE of an earlier incarnation of the id (closed for a reselect) is ignored; of the current one closes it", async () => {
    const { pool, emit } = fakePool();
    const closed: string[] = [];
    const m = new DownstreamMonitor(pool, "nsmgr", new MonitorStore(), rootLogger, (id) => closed.push(id));
    // Another connection keeps the stream to the next hop open, as on any busy node.
    m.track(
      "unix:///fwd.sock",
      Connection.fromPartial({ id: "f2", path: { pathSegments: [{ name: "nsmgr", id: "m2" }] } }),
    );
    // Reselect through the same next hop: the old connection closed, a new one made with the same ids.
    m.track("unix:///fwd.sock", downstreamConn("old"));
    m.untrack("unix:///fwd.sock", "m1");
    m.track("unix:///fwd.sock", downstreamConn("new"));
    emit(deleted(downstreamConn("old")));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(closed, [], "the late DELETE of the old connection must not close the new one");
    emit(deleted(downstreamConn("new")));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(closed, ["m1"]);
    m.close();
  });
});
