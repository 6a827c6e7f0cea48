// mentionsTracked: the partial read of a ConnectionEvent agrees with decoding it and looking up the hop's
// first path segment, as DownstreamMonitor.apply does.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Connection, ConnectionEvent, ConnectionEventType } from "../../api/connection.js";
import { mentionsTracked } from "./downstream.js";

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
