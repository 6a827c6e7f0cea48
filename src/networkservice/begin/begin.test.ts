// begin: per-connection state survives a refused Close; a new connection that fails is forgotten.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { chain, element } from "../../core/chain.js";
import { CallContext } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { rootLogger } from "../../core/log.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { beginServer } from "./begin.js";

const ctx = (): CallContext => CallContext.background(rootLogger);
const req = (id: string) => ({
  connection: { ...emptyConnection(), id, networkService: "s" },
  mechanismPreferences: [],
});

describe("begin", () => {
  it("keeps the connection when the Close is refused further down", async () => {
    const begin = beginServer(rootLogger);
    let refuse = true;
    const c = chain([
      begin,
      element(
        "gate",
        (r, x, next) => next.request(r, x),
        (conn, x, next) =>
          refuse ? Promise.reject(new StatusError(status.PERMISSION_DENIED, "no")) : next.close(conn, x),
      ),
    ]);
    await c.request(req("a"), ctx());
    await assert.rejects(c.close({ ...emptyConnection(), id: "a" }, ctx()));
    assert.equal(begin.size, 1, "a refused Close changes nothing");
    refuse = false;
    await c.close({ ...emptyConnection(), id: "a" }, ctx());
    assert.equal(begin.size, 0);
  });

  it("forgets a new connection whose Request failed, keeps an established one", async () => {
    const begin = beginServer(rootLogger);
    let fail = true;
    const c = chain([
      begin,
      element("maybe", (r, x, next) => (fail ? Promise.reject(new Error("boom")) : next.request(r, x))),
    ]);
    await assert.rejects(c.request(req("b"), ctx()));
    assert.equal(begin.size, 0);
    fail = false;
    await c.request(req("b"), ctx());
    fail = true;
    await assert.rejects(c.request(req("b"), ctx()));
    assert.equal(begin.size, 1, "a failed refresh keeps the established connection");
  });

  it("answers a Close of a connection it never saw (or already closed) with OK, without going downstream", async () => {
    const closed: string[] = [];
    const c = chain([
      beginServer(rootLogger),
      element(
        "downstream",
        (r, x, next) => next.request(r, x),
        (conn, x, next) => {
          closed.push(conn.id);
          return next.close(conn, x);
        },
      ),
    ]);
    // A caller naming someone else's id and endpoint, as a forwarder would see it after a restart.
    const unknown = {
      ...emptyConnection(),
      id: "never-seen",
      networkService: "s",
      networkServiceEndpointName: "nse-1",
      path: {
        index: 0,
        pathSegments: [{ name: "x", id: "never-seen", token: "", expires: undefined, metrics: {} }],
      },
    };
    assert.equal(await c.close(unknown, ctx()), undefined);
    assert.deepEqual(closed, [], "nothing downstream heard of it");
    await c.request(req("known"), ctx());
    await c.close({ ...emptyConnection(), id: "known" }, ctx());
    await c.close({ ...emptyConnection(), id: "known" }, ctx());
    assert.deepEqual(
      closed,
      ["known"],
      "a known connection is closed downstream once; the second Close stops here",
    );
  });

  it("ignores a Close of an unknown connection, or passes it on with closeUnknown (restarted forwarders)", async () => {
    for (const closeUnknown of [false, true]) {
      const closed: string[] = [];
      const c = chain([
        beginServer(rootLogger, { closeUnknown: () => closeUnknown }),
        element(
          "tail",
          (r, x, next) => next.request(r, x),
          (conn, x, next) => {
            x.connMeta();
            closed.push(conn.id);
            return next.close(conn, x);
          },
        ),
      ]);
      await c.close({ ...emptyConnection(), id: "lost", networkServiceEndpointName: "nse-1" }, ctx());
      assert.deepEqual(closed, closeUnknown ? ["lost"] : []);
    }
  });

  it("serialises events of one connection", async () => {
    const begin = beginServer(rootLogger);
    const order: string[] = [];
    const c = chain([
      begin,
      element("slow", async (r, x, next) => {
        order.push(`start ${r.connection!.labels.n}`);
        await new Promise((res) => setTimeout(res, 20));
        order.push(`end ${r.connection!.labels.n}`);
        return next.request(r, x);
      }),
    ]);
    const a = req("c");
    const b = req("c");
    a.connection.labels = { n: "1" };
    b.connection.labels = { n: "2" };
    await Promise.all([c.request(a, ctx()), c.request(b, ctx())]);
    assert.deepEqual(order, ["start 1", "end 1", "start 2", "end 2"]);
  });
});
