// `clientinfo`: adds where the client runs (nodeName, podName, clusterName from NODE_NAME/POD_NAME/
// CLUSTER_NAME) to the connection's labels, never overwriting what the client set. Selectors such as
// {{.nodeName}} rely on it.
import type { NetworkServiceElement } from "../../core/chain.js";

export function clientInfoLabels(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  if (env.NODE_NAME) out.nodeName = env.NODE_NAME;
  if (env.POD_NAME) out.podName = env.POD_NAME;
  if (env.CLUSTER_NAME) out.clusterName = env.CLUSTER_NAME;
  return out;
}

export function clientInfo(labels: Record<string, string>): NetworkServiceElement {
  return {
    name: "clientinfo",
    request(req, ctx, next) {
      const conn = req.connection!;
      conn.labels = { ...labels, ...conn.labels };
      return next.request(req, ctx);
    },
  };
}
