// `roundrobin` (forwarder): tries the discovered endpoints starting at a per-service rotating offset, and
// moves on to the next one when a Request fails. The chosen endpoint's name goes into the connection.
import { NetworkServiceRequest } from "../../api/networkservice.js";
import { status } from "@grpc/grpc-js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { StatusError, toStatusError } from "../../core/errors.js";
import { setClientUrl } from "../clienturl/clienturl.js";
import { candidates } from "../discover/discover.js";

export function roundRobinServer(): NetworkServiceElement {
  const cursors = new Map<string, number>();
  return {
    name: "roundrobin",
    async request(req, ctx, next) {
      const list = candidates(ctx);
      const service = req.connection!.networkService;
      const start = cursors.get(service) ?? 0;
      cursors.set(service, start + 1);
      const failures: string[] = [];
      let lastCode = status.UNAVAILABLE;
      for (let i = 0; i < list.length; i++) {
        const nse = list[(start + i) % list.length]!;
        const attempt = NetworkServiceRequest.fromPartial(req);
        attempt.connection!.networkServiceEndpointName = nse.name;
        setClientUrl(ctx, nse.url);
        try {
          return await next.request(attempt, ctx);
        } catch (err) {
          const e = toStatusError(err);
          if (ctx.signal.aborted) throw e;
          ctx.log.info(
            { connId: req.connection!.id, nse: nse.name, err: e.details },
            "endpoint failed, trying the next",
          );
          failures.push(`${nse.name}: ${e.details}`);
          lastCode = e.code;
        }
      }
      if (list.length === 1) throw new StatusError(lastCode, failures[0]!);
      throw new StatusError(
        lastCode,
        `all ${list.length} endpoints of "${service}" failed: ${failures.join("; ")}`,
      );
    },
  };
}
