// The bare-HTTP/2 transport floor for bench/control-plane.ts: relay-child.ts without grpc-js. Each Request is
// decoded, encoded again and sent with the caller's token headers to the next relay; its answer is decoded
// and encoded again on the way back; the last relay answers with the request's connection. The same protobuf
// work as the grpc-js relay, so the difference between the two floors is what grpc-js costs.
//   node dist/bench/h2-relay-child.js <listen url> [<next url>]   (built by scripts/build.mjs)
//   node --import tsx bench/lib/h2-relay-child.ts <listen url> [<next url>]
import { createServer, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { Connection } from "../../src/api/connection.js";
import { NetworkServiceRequest } from "../../src/api/networkservice.js";
import { removeStaleSocket } from "../../src/core/grpc.js";
import { parseEndpoint } from "../../src/core/url.js";
import { emptyConnection } from "../../src/networkservice/updatepath/updatepath.js";
import { tokenExpiresKey, tokenKey } from "../../src/security/token.js";
import { H2Caller, grpcFrame, grpcMessage } from "./h2call.js";

const [listen, next] = process.argv.slice(2);
if (!listen) {
  console.error("usage: h2-relay-child.ts <listen url> [<next url>]");
  process.exit(2);
}
const downstream = next ? new H2Caller(next) : undefined;

function answer(stream: ServerHttp2Stream, body: Buffer): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(body);
}

function fail(stream: ServerHttp2Stream, err: unknown): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () =>
    stream.sendTrailers({ "grpc-status": "14", "grpc-message": encodeURIComponent(String(err)) }),
  );
  stream.end();
}

/** Decodes, relays and answers one call; anything thrown becomes a gRPC error on the stream. */
async function relay(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, body: Buffer): Promise<void> {
  const req = NetworkServiceRequest.decode(grpcMessage(body));
  if (!downstream) {
    answer(stream, grpcFrame(Connection.encode(req.connection ?? emptyConnection()).finish()));
    return;
  }
  const fwd: Record<string, string> = {};
  for (const key of [tokenKey, tokenExpiresKey]) {
    const v = headers[key];
    if (typeof v === "string") fwd[key] = v;
  }
  const res = await downstream.call(
    String(headers[":path"]),
    grpcFrame(NetworkServiceRequest.encode(req).finish()),
    fwd,
  );
  answer(stream, grpcFrame(Connection.encode(Connection.decode(grpcMessage(res))).finish()));
}

const server = createServer();
server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("error", () => stream.destroy());
  stream.on("end", () => {
    relay(stream, headers, Buffer.concat(chunks)).catch((err: unknown) => {
      try {
        fail(stream, err);
      } catch {
        stream.destroy();
      }
    });
  });
});

const ep = parseEndpoint(listen, "listen url");
if (ep.kind === "unix") {
  await removeStaleSocket(ep.path);
  server.listen(ep.path);
} else {
  server.listen(ep.port, ep.host);
}
process.on("SIGTERM", () => {
  downstream?.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
});
