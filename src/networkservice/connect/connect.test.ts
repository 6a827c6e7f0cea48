// connect: a Request to a peer that restarts on the same socket reaches it once it serves again, even while
// the channel is still backing off from the failed attempts; an answer that comes from the peer (the channel
// connected) is never resent.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Connection } from "../../api/connection.js";
import { NetworkServiceService, type NetworkServiceRequest } from "../../api/networkservice.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { NsmServer } from "../../core/grpc.js";
import { unaryHandler } from "../../core/handlers.js";
import { rootLogger } from "../../core/log.js";
import { setClientUrl } from "../clienturl/clienturl.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { chain } from "../../core/chain.js";
import { connect } from "./connect.js";
import { ClientPool } from "./pool.js";

/** A NetworkService whose Request counts calls and answers `fail` as an error from the peer when set. */
function peer(calls: { n: number }, fail?: StatusError): NsmServer {
  const handle = (req: NetworkServiceRequest): Promise<Connection> => {
    calls.n++;
    return fail ? Promise.reject(fail) : Promise.resolve(req.connection!);
  };
  return new NsmServer([
    {
      name: "networkservice.NetworkService",
      definition: NetworkServiceService,
      implementation: {
        request: unaryHandler(rootLogger, "Request", handle),
        close: unaryHandler(rootLogger, "Close", () => Promise.resolve({})),
      },
    },
  ]);
}

function callContext(url: string): CallContext {
  const ctx = new CallContext(
    rootLogger,
    new AbortController().signal,
    undefined,
    new Date(Date.now() + 8000),
  );
  ctx.connection = new ConnectionMetadata();
  setClientUrl(ctx, url);
  return ctx;
}

const request = (): NetworkServiceRequest => ({
  connection: { ...emptyConnection(), id: "c", networkService: "s" },
  mechanismPreferences: [],
});

describe("connect", () => {
  const dir = mkdtempSync(join(tmpdir(), "nsm-connect-"));
  const servers: NsmServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("waits for a channel that is reconnecting to a restarted peer, and sends once", async () => {
    const url = `unix://${join(dir, "restart.sock")}`;
    const pool = new ClientPool();
    const el = chain([connect({ pool })]);
    try {
      // Nobody serves yet: the first attempt fails and the channel backs off.
      await assert.rejects(el.request(request(), callContext(url)), (e: StatusError) => {
        return e.code === status.UNAVAILABLE;
      });
      const calls = { n: 0 };
      const s = peer(calls);
      servers.push(s);
      await s.listen(url);
      const conn = await el.request(request(), callContext(url));
      assert.equal(conn.id, "c");
      assert.equal(calls.n, 1);
    } finally {
      pool.close();
    }
  });

  it("does not resend an UNAVAILABLE that the connected peer answered", async () => {
    const url = `unix://${join(dir, "peer-fails.sock")}`;
    const calls = { n: 0 };
    const s = peer(calls, new StatusError(status.UNAVAILABLE, "next hop down"));
    servers.push(s);
    await s.listen(url);
    const pool = new ClientPool();
    try {
      await assert.rejects(chain([connect({ pool })]).request(request(), callContext(url)), /next hop down/);
      assert.equal(calls.n, 1);
    } finally {
      pool.close();
    }
  });
});
