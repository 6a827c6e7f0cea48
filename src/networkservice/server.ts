// gRPC NetworkService (Request/Close) over a chain.
import { NetworkServiceService, type NetworkServiceRequest } from "../api/networkservice.js";
import type { Connection } from "../api/connection.js";
import type { NetworkServiceNext } from "../core/chain.js";
import type { RegisteredService } from "../core/grpc.js";
import { unaryHandler } from "../core/handlers.js";
import type { Logger } from "../core/log.js";
import { invalidArgument } from "../core/errors.js";

export function networkServiceService(chain: NetworkServiceNext, log: Logger): RegisteredService {
  return {
    name: "networkservice.NetworkService",
    definition: NetworkServiceService,
    implementation: {
      request: unaryHandler(log, "Request", (req: NetworkServiceRequest, ctx) => {
        if (!req.connection) throw invalidArgument("connection", "missing");
        if (!req.connection.networkService)
          throw invalidArgument("connection.network_service", "must not be empty");
        return chain.request(req, ctx);
      }),
      close: unaryHandler(log, "Close", async (conn: Connection, ctx) => {
        await chain.close(conn, ctx);
        return {};
      }),
    },
  };
}
