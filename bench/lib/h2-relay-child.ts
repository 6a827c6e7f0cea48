// The bare-HTTP/2 transport floor for bench/control-plane.ts: like relay-child.ts, but on node:http2 alone.
// Each call's body (gRPC-framed) is passed unchanged, with the caller's token headers, to the next relay, and
// the answer passed back; the last relay echoes it. No grpc-js and no protobuf decoding, so the chain costs
// only what Node's HTTP/2 and the sockets cost per hop.
//   node --import tsx bench/lib/h2-relay-child.ts <listen url> [<next url>]
import { createServer, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { removeStaleSocket } from "../../src/core/grpc.js";
import { parseEndpoint } from "../../src/core/url.js";
import { tokenExpiresKey, tokenKey } from "../../src/security/token.js";
import { H2Caller } from "./h2call.js";

const [listen, next] = process.argv.slice(2);
if (!listen) {
  console.error("usage: h2-relay-child.ts <listen url> [<next url>]");
  process.exit(2);
}
const downstream = next ? new H2Caller(next) : undefined;

function answer(stream: ServerHttp2Stream, body: Buffer): void {
  if (stream.destroyed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(body);
}

function fail(stream: ServerHttp2Stream, err: unknown): void {
  if (stream.destroyed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () =>
    stream.sendTrailers({ "grpc-status": "14", "grpc-message": encodeURIComponent(String(err)) }),
  );
  stream.end();
}

const server = createServer();
server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("error", () => stream.destroy());
  stream.on("end", () => {
    const body = Buffer.concat(chunks);
    if (!downstream) {
      answer(stream, body);
      return;
    }
    const fwd: Record<string, string> = {};
    for (const key of [tokenKey, tokenExpiresKey]) {
      const v = headers[key];
      if (typeof v === "string") fwd[key] = v;
    }
    downstream.call(String(headers[":path"]), body, fwd).then(
      (res) => answer(stream, res),
      (err: unknown) => fail(stream, err),
    );
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
