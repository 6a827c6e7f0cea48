// The nsm-ts library: what people use to write their own NSM components in TypeScript.
export * as connection from "./api/connection.js";
export * as connectioncontext from "./api/connectioncontext.js";
export * as networkservice from "./api/networkservice.js";
export * as registry from "./api/registry.js";
export * as ipam from "./api/ipam.js";
export { CallContext } from "./core/context.js";
export {
  registryChain,
  type RegistryServer,
  type RegistryNext,
  type FindStream,
} from "./core/registrychain.js";
export { GrpcClient, collect } from "./core/client.js";
export { NsmServer } from "./core/grpc.js";
export { StatusError, invalidArgument, notFound, permissionDenied } from "./core/errors.js";
export { RegistryClient, endpoint, service } from "./registry/client.js";
export { selectEndpoints, liveEndpoints } from "./registry/selector.js";
export { isSubset, renderTemplate } from "./registry/template.js";
export { startRegistry, type RegistryOptions } from "./components/registry.js";
export { chain, element, type NetworkServiceElement, type NetworkServiceNext } from "./core/chain.js";
export { startEndpoint, startIcmpResponder, type EndpointOptions } from "./components/endpoint.js";
export { NsmClient, parseServiceUrl, type ClientOptions, type ServiceRequest } from "./components/client.js";
export { startNsmgr, type NsmgrOptions } from "./components/nsmgr.js";
export { startForwarder, type ForwarderOptions } from "./components/forwarder.js";
export { createSecurity, type Security } from "./components/security.js";
export { noopDataPlane, type DataPlane, type Leg } from "./forwarder/dataplane.js";
export { point2pointIpam } from "./networkservice/ipam/ipam.js";
export { mechanismsServer } from "./networkservice/mechanisms/mechanisms.js";
export { kernelServer, kernelOffer } from "./networkservice/mechanisms/kernel.js";
export { eventFactory } from "./networkservice/begin/begin.js";
export { enableMetrics, metricsRegistry } from "./observability/metrics/registry.js";
export { startMetricsServer } from "./observability/metrics/server.js";
export { metricsServer, metricsClient } from "./networkservice/metrics/metrics.js";
