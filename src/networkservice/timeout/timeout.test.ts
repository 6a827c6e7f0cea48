// timeout: the deadline is min(the caller's `-expires` metadata, its token's `exp`, a cap), not whatever the
// caller claims; a connection that is not refreshed is closed then.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata } from "@grpc/grpc-js";
import type { Connection, PathSegment } from "../../api/connection.js";
import { chain, element } from "../../core/chain.js";
import { CallContext } from "../../core/context.js";
import { rootLogger } from "../../core/log.js";
import { msToTimestamp } from "../../core/time.js";
import { tokenKey } from "../../security/token.js";
import { beginServer } from "../begin/begin.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { defaultMaxTimeoutMs, timeoutDeadline, timeoutServer } from "./timeout.js";

const day = 24 * 3600_000;

/** An unsigned JWT with the given claims: timeout only reads `exp` (authorize checks signatures). */
function jwt(claims: { sub?: string; exp?: number }): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "ES256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}

function segment(name: string, expiresMs: number | undefined, token = ""): PathSegment {
  return {
    name,
    id: `${name}-id`,
    token,
    expires: expiresMs === undefined ? undefined : msToTimestamp(expiresMs),
    metrics: {},
  };
}

describe("timeout deadline", () => {
  const now = Date.now();

  it("a token exp earlier than the metadata's expiry wins", () => {
    const prev = segment("nsc", now + 24.8 * day, jwt({ exp: Math.floor((now + 600_000) / 1000) }));
    assert.equal(
      timeoutDeadline(prev, undefined, defaultMaxTimeoutMs, undefined, now),
      Math.floor((now + 600_000) / 1000) * 1000,
    );
  });

  it("the metadata's expiry wins when it is earlier than the token's exp", () => {
    const prev = segment("nsc", now + 60_000, jwt({ exp: Math.floor((now + 600_000) / 1000) }));
    assert.equal(timeoutDeadline(prev, undefined, defaultMaxTimeoutMs, undefined, now), now + 60_000);
  });

  it("the presented token's exp bounds a segment without a token", () => {
    const prev = segment("nsc", now + day);
    const presented = jwt({ exp: Math.floor((now + 120_000) / 1000) });
    assert.equal(
      timeoutDeadline(prev, undefined, defaultMaxTimeoutMs, presented, now),
      Math.floor((now + 120_000) / 1000) * 1000,
    );
  });

  it("without a token exp (or with a far one) the cap holds: 1 h by default", () => {
    const far = segment("nsc", now + 24.8 * day, jwt({ exp: Math.floor((now + 30 * day) / 1000) }));
    assert.equal(timeoutDeadline(far, undefined, defaultMaxTimeoutMs, undefined, now), now + 3600_000);
    const noToken = segment("nsc", now + 24.8 * day);
    assert.equal(timeoutDeadline(noToken, undefined, 5000, "not a token", now), now + 5000);
  });

  it("the cap rises to this hop's own token lifetime, which callers refresh within anyway", () => {
    const prev = segment("nsc", now + day);
    const own = segment("nsmgr", now + 2 * 3600_000);
    assert.equal(timeoutDeadline(prev, own, defaultMaxTimeoutMs, undefined, now), now + 2 * 3600_000);
  });

  it("no expiry at all: no timeout", () => {
    assert.equal(timeoutDeadline(segment("nsc", undefined), undefined, defaultMaxTimeoutMs), undefined);
  });
});

describe("timeout element", () => {
  it("closes a connection at its token's exp although its metadata claims 24.8 days", async () => {
    const closed: string[] = [];
    const expMs = Date.now() + 1500;
    const token = jwt({ sub: "spiffe://test/nsc", exp: Math.floor(expMs / 1000) });
    const c = chain([
      beginServer(rootLogger),
      // Stands in for updatepath + updatetoken: this hop's segment is current, the caller's carries its token
      // and the expiry its metadata claims.
      element("path", (req, ctx, next) => {
        const conn = req.connection!;
        conn.path = {
          index: 1,
          pathSegments: [segment("nsc", Date.now() + 24.8 * day, token), segment("hop", undefined)],
        };
        return next.request(req, ctx);
      }),
      timeoutServer(),
      element(
        "tail",
        (req) => Promise.resolve(req.connection!),
        (conn: Connection) => {
          closed.push(conn.id);
          return Promise.resolve();
        },
      ),
    ]);
    const md = new Metadata();
    md.set(tokenKey, token);
    const ctx = new CallContext(rootLogger, new AbortController().signal, md);
    await c.request(
      { connection: { ...emptyConnection(), id: "c1", networkService: "s" }, mechanismPreferences: [] },
      ctx,
    );
    const started = Date.now();
    while (closed.length === 0 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(closed, ["c1"], "closed by the timeout");
    assert.ok(Date.now() >= Math.floor(expMs / 1000) * 1000 - 50, "not before the token's exp");
  });
});
