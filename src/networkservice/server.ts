// gRPC NetworkService (Request/Close) over a chain.
import { NetworkServiceService, type NetworkServiceRequest } from "../api/networkservice.js";
import type { Connection } from "../api/connection.js";
import type { NetworkServiceNext } from "../core/chain.js";
import type { RegisteredService } from "../core/grpc.js";
import { unaryHandler } from "../core/handlers.js";
import type { Logger } from "../core/log.js";
import { invalidArgument } from "../core/errors.js";
import { annotateSpan, serverSpan } from "../observability/tracing/spans.js";

const service = "networkservice.NetworkService";

export function networkServiceService(chain: NetworkServiceNext, log: Logger): RegisteredService {
  return {
    name: service,
    definition: NetworkServiceService,
    implementation: {
      request: unaryHandler(log, "Request", (req: NetworkServiceRequest, ctx) => {
        if (!req.connection) throw invalidArgument("connection", "missing");
        if (!req.connection.networkService)
          throw invalidArgument("connection.network_service", "must not be empty");
        // A span per hop, child of the caller's (W3C traceparent), as upstream's gRPC interceptors make.
        return serverSpan(ctx, `${service}/Request`, req.connection, async () => {
          const conn = await chain.request(req, ctx);
          annotateSpan(ctx, conn);
          return conn;
        });
      }),
      close: unaryHandler(log, "Close", async (conn: Connection, ctx) => {
        await serverSpan(ctx, `${service}/Close`, conn, () => chain.close(conn, ctx));
        return {};
      }),
    },
  };
}
