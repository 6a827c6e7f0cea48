// Registry `redial` (nsmgr): a forwarder or endpoint that registers is up. A channel to its URL still in
// reconnect backoff (the peer restarted) fails every call at once until the backoff ends, up to a second
// later; it is replaced, so the next Request dials now. Seen on register, before localbypass swaps the URL.
import type {
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse,
} from "../api/registry.js";
import type { RegistryServer } from "../core/registrychain.js";
import type { ClientPool } from "../networkservice/connect/pool.js";

export function redialNSE(
  pool: ClientPool,
): RegistryServer<NetworkServiceEndpoint, NetworkServiceEndpointQuery, NetworkServiceEndpointResponse> {
  return {
    name: "redial",
    async register(nse, ctx, next) {
      const stored = await next.register(nse, ctx);
      if (nse.url) pool.peerUp(nse.url);
      return stored;
    },
  };
}
