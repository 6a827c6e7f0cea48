// Bare HTTP/2 calls for the second transport floor of bench/control-plane.ts (bench/lib/h2-relay-child.ts):
// one gRPC-framed POST per call with the caller's token headers, read to the end. No grpc-js: what node:http2
// costs per hop, beside the protobuf work the callers do themselves.
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
      // A stream reset without 'end' or 'error' must not leave the call hanging (no-op once settled).
      req.on("close", () => reject(new Error(`stream to ${this.url} closed before its end`)));
      req.end(frame);
    });
  }

  close(): void {
    this.session?.close();
  }
}

/** The message of one length-prefixed, uncompressed gRPC frame. */
export function grpcMessage(frame: Buffer): Buffer {
  if (frame.length < 5 || frame[0] !== 0) throw new Error("not one uncompressed gRPC frame");
  return frame.subarray(5, 5 + frame.readUInt32BE(1));
}

/** A protobuf message in gRPC's length-prefixed framing (uncompressed). */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}
