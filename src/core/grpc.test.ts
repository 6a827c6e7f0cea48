// Server limits: oversized metadata is refused with a clear status (and the server keeps serving); a client
// connection cannot have more than grpc.max_concurrent_streams calls open at once.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { NetworkServiceService, type NetworkServiceRequest } from "../api/networkservice.js";
import type { Connection } from "../api/connection.js";
import { emptyConnection } from "../networkservice/updatepath/updatepath.js";
import { GrpcClient } from "./client.js";
import { NsmServer, defaultMaxMetadataSize, defaultServerOptions, metadataSize } from "./grpc.js";
import { unaryHandler } from "./handlers.js";
import { rootLogger } from "./log.js";

const held: (() => void)[] = [];

function server(opts: ConstructorParameters<typeof NsmServer>[2] = {}): NsmServer {
  return new NsmServer(
    [
      {
        name: "networkservice.NetworkService",
        definition: NetworkServiceService,
        implementation: {
          request: unaryHandler(rootLogger, "Request", async (req: NetworkServiceRequest) => {
            if (req.connection!.id === "hold") await new Promise<void>((r) => held.push(r));
            return req.connection!;
          }),
          close: unaryHandler(rootLogger, "Close", (_c: Connection) => Promise.resolve({})),
        },
      },
    ],
    undefined,
    opts,
  );
}

const request = (id: string): NetworkServiceRequest => ({
  connection: { ...emptyConnection(), id },
  mechanismPreferences: [],
});

function code(err: unknown): status | undefined {
  return (err as { code?: status }).code;
}

describe("NsmServer limits", () => {
  let srv: NsmServer;
  let client: GrpcClient;

  before(async () => {
    srv = server();
    client = new GrpcClient(await srv.listen("tcp://127.0.0.1:0"));
  });
  after(async () => {
    client.close();
    await srv.stop(0);
  });

  it("defaults: 256 streams per connection, 16 KiB of metadata", () => {
    assert.equal(defaultServerOptions["grpc.max_concurrent_streams"], 256);
    assert.equal(defaultServerOptions["grpc.max_metadata_size"], 16 * 1024);
  });

  it("refuses 64 KiB of metadata with RESOURCE_EXHAUSTED naming the limit, and keeps serving", async () => {
    const md = new Metadata();
    md.set("x-padding", "a".repeat(64 * 1024));
    assert.ok(metadataSize(md) > defaultMaxMetadataSize);
    await assert.rejects(
      client.unary(NetworkServiceService.request, request("big"), { metadata: md, timeoutMs: 5000 }),
      (e) =>
        code(e) === status.RESOURCE_EXHAUSTED &&
        /metadata is \d+ bytes, over the server's limit of 16384 \(grpc\.max_metadata_size\)/.test(
          (e as Error).message,
        ),
    );
    // Binary metadata counts too.
    const bin = new Metadata();
    bin.set("x-padding-bin", Buffer.alloc(20_000));
    await assert.rejects(
      client.unary(NetworkServiceService.request, request("big-bin"), { metadata: bin, timeoutMs: 5000 }),
      (e) => code(e) === status.RESOURCE_EXHAUSTED,
    );
    const small = new Metadata();
    small.set("x-padding", "a".repeat(4 * 1024));
    const { response } = await client.unary(NetworkServiceService.request, request("fine"), {
      metadata: small,
      timeoutMs: 5000,
    });
    assert.equal(response.id, "fine", "the same server and channel still serve");
  });
});

describe("NsmServer maxConcurrentStreams", () => {
  it("a connection's calls beyond the limit wait for a slot", async () => {
    const srv = server({ maxConcurrentStreams: 1 });
    const client = new GrpcClient(await srv.listen("tcp://127.0.0.1:0"));
    try {
      await client.unary(NetworkServiceService.request, request("warm-up"), { timeoutMs: 5000 });
      const first = client.unary(NetworkServiceService.request, request("hold"), { timeoutMs: 10_000 });
      while (held.length === 0) await new Promise((r) => setTimeout(r, 10));
      await assert.rejects(
        client.unary(NetworkServiceService.request, request("second"), { timeoutMs: 300 }),
        (e) => code(e) === status.DEADLINE_EXCEEDED,
        "no stream slot while the first call is open",
      );
      held.shift()!();
      await first;
      const { response } = await client.unary(NetworkServiceService.request, request("third"), {
        timeoutMs: 5000,
      });
      assert.equal(response.id, "third");
    } finally {
      client.close();
      await srv.stop(0);
    }
  });
});
