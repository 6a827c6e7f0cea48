// The call context's abort signal means "the client gave up": it must fire on a cancel before the reply,
// and must not fire after a successful reply (grpc-js reports the closing stream as "cancelled" too).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NetworkServiceService, type NetworkServiceRequest } from "../api/networkservice.js";
import type { Connection } from "../api/connection.js";
import { emptyConnection } from "../networkservice/updatepath/updatepath.js";
import { GrpcClient } from "./client.js";
import { NsmServer } from "./grpc.js";
import { unaryHandler } from "./handlers.js";
import { rootLogger } from "./log.js";

const signals: AbortSignal[] = [];
let release: (() => void) | undefined;
let server: NsmServer;
let client: GrpcClient;

describe("unaryHandler abort signal", () => {
  before(async () => {
    server = new NsmServer([
      {
        name: "networkservice.NetworkService",
        definition: NetworkServiceService,
        implementation: {
          request: unaryHandler(rootLogger, "Request", async (req: NetworkServiceRequest, ctx) => {
            signals.push(ctx.signal);
            if (req.connection!.id === "slow") await new Promise<void>((r) => (release = r));
            return req.connection!;
          }),
          close: unaryHandler(rootLogger, "Close", (_c: Connection) => Promise.resolve({})),
        },
      },
    ]);
    client = new GrpcClient(await server.listen("tcp://127.0.0.1:0"));
  });
  after(async () => {
    client.close();
    await server.stop(0);
  });

  it("stays unaborted after a successful reply", async () => {
    await client.unary(NetworkServiceService.request, {
      connection: { ...emptyConnection(), id: "fast" },
      mechanismPreferences: [],
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(signals.at(-1)!.aborted, false);
  });

  it("aborts when the client cancels before the reply", async () => {
    const ac = new AbortController();
    const call = client.unary(
      NetworkServiceService.request,
      { connection: { ...emptyConnection(), id: "slow" }, mechanismPreferences: [] },
      { signal: ac.signal },
    );
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await assert.rejects(call);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(signals.at(-1)!.aborted, true);
    release?.();
  });
});
