// Registry `clientinfo` (nsmgr): adds nodeName/podName/clusterName to every service's labels of an endpoint
// registered through this nsmgr, never overwriting labels the endpoint set.
import type {
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse,
} from "../api/registry.js";
import type { RegistryServer } from "../core/registrychain.js";

export function clientInfoNSE(
  labels: Record<string, string>,
): RegistryServer<NetworkServiceEndpoint, NetworkServiceEndpointQuery, NetworkServiceEndpointResponse> {
  return {
    name: "clientinfo",
    register(nse, ctx, next) {
      if (Object.keys(labels).length === 0) return next.register(nse, ctx);
      const services = new Set([...nse.networkServiceNames, ...Object.keys(nse.networkServiceLabels)]);
      const networkServiceLabels = Object.fromEntries(
        [...services].map((s) => [
          s,
          { labels: { ...labels, ...(nse.networkServiceLabels[s]?.labels ?? {}) } },
        ]),
      );
      return next.register({ ...nse, networkServiceLabels }, ctx);
    },
  };
}
