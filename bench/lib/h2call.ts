// Bare HTTP/2 calls for the second transport floor of bench/control-plane.ts (bench/lib/h2-relay-child.ts):
// one gRPC-framed POST per call with the caller's token headers, read to the end. No grpc-js, no protobuf
// decoding: what node:http2 alone costs per hop.
import {
  connect as h2connect,
  type ClientHttp2Session,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from "node:http2";
import { connect as netConnect } from "node:net";
import { parseEndpoint } from "../../src/core/url.js";

export class H2Caller {
  private session?: ClientHttp2Session;

  constructor(private readonly url: string) {}

  private open(): ClientHttp2Session {
    if (this.session && !this.session.destroyed && !this.session.closed) return this.session;
    const ep = parseEndpoint(this.url, "relay url");
    const s =
      ep.kind === "unix"
        ? h2connect("http://localhost", { createConnection: () => netConnect(ep.path) })
        : h2connect(`http://${ep.host}:${ep.port}`);
    s.on("error", () => s.destroy());
    this.session = s;
    return s;
  }

  /** POSTs `frame` (a length-prefixed gRPC message) to `path`; resolves with the response body. */
  call(path: string, frame: Buffer, headers: OutgoingHttpHeaders): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const req = this.open().request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      const chunks: Buffer[] = [];
      let grpcStatus: string | undefined;
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("trailers", (t: IncomingHttpHeaders) => (grpcStatus = String(t["grpc-status"])));
      req.on("error", reject);
      req.on("end", () =>
        grpcStatus === "0"
          ? resolve(Buffer.concat(chunks))
          : reject(new Error(`grpc-status ${grpcStatus ?? "missing"} from ${this.url}`)),
      );
      req.end(frame);
    });
  }

  close(): void {
    this.session?.close();
  }
}

/** A protobuf message in gRPC's length-prefixed framing (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}
