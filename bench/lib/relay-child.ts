// The transport floor for bench/control-plane.ts: a NetworkService server with no NSM logic at all. Request
// and Close are decoded, passed unchanged (with the caller's nsm-client-token metadata) to the next relay, and
// the answer is passed back; the last relay answers at once. A chain of these, one process per hop and on
// the same sockets as the real mesh, costs what any control plane built as one grpc-js process per hop must
// pay before it does any work of its own.
//   node dist/bench/relay-child.js <listen url> [<next url>]   (built by scripts/build.mjs)
//   node --import tsx bench/lib/relay-child.ts <listen url> [<next url>]
import * as grpc from "@grpc/grpc-js";
import { NetworkServiceService } from "../../src/api/networkservice.js";
import { GrpcClient, type MethodDefinition } from "../../src/core/client.js";
import { NsmServer } from "../../src/core/grpc.js";
import { emptyConnection } from "../../src/networkservice/updatepath/updatepath.js";
import { tokenExpiresKey, tokenKey } from "../../src/security/token.js";

const [listen, next] = process.argv.slice(2);
if (!listen) {
  console.error("usage: relay-child.ts <listen url> [<next url>]");
  process.exit(2);
}
const client = next ? new GrpcClient(next) : undefined;

/** The caller's token headers only: grpc-js sets the transport's own headers itself. */
function forwarded(md: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const key of [tokenKey, tokenExpiresKey]) {
    const v = md.get(key)[0];
    if (typeof v === "string") out.set(key, v);
  }
  return out;
}

function relay<Req, Res>(
  def: MethodDefinition<Req, Res>,
  answer: (req: Req) => Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    if (!client) {
      callback(null, answer(call.request));
      return;
    }
    client.unary(def, call.request, { metadata: forwarded(call.metadata) }).then(
      (r) => callback(null, r.response),
      (err: grpc.ServiceError) => callback(err),
    );
  };
}

const server = new NsmServer([
  {
    name: "networkservice.NetworkService",
    definition: NetworkServiceService,
    implementation: {
      request: relay(NetworkServiceService.request, (req) => req.connection ?? emptyConnection()),
      close: relay(NetworkServiceService.close, () => ({})),
    },
  },
]);
await server.listen(listen);
process.on("SIGTERM", () => {
  client?.close();
  void server.stop(0).then(() => process.exit(0));
});
