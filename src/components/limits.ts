// What a component lets in (issue 12 "untrusted input"): bounds on streams, metadata, monitor watchers,
// channels and dial targets, registrations and watches. Carried by the component's Security, so one set of
// flags (src/cli/security.ts) reaches every server, pool and table; unset fields keep each module's default.
import type { NsmServerOptions } from "../core/grpc.js";
import type { ClientPoolOptions } from "../networkservice/connect/pool.js";
import type { MonitorServiceOptions } from "../networkservice/monitor/monitor.js";
import type { RegistrationLimits } from "../registry/memory.js";
import type { RegistryServiceOptions } from "../registry/server.js";

export interface Limits {
  /** gRPC servers: concurrent streams per client connection, request metadata size. */
  server?: NsmServerOptions;
  /** MonitorConnections: identities that see everything, streams per identity. */
  monitor?: Pick<MonitorServiceOptions, "seeAll" | "maxStreamsPerIdentity">;
  /** Channel pools: how many, and which URLs may be dialled at all. */
  pool?: Pick<ClientPoolOptions, "maxChannels" | "allowDial">;
  /** Registry tables: live registrations per identity and in all. */
  registrations?: RegistrationLimits;
  /** Registry services: concurrent Find watches per identity. */
  registry?: Pick<RegistryServiceOptions, "maxWatchesPerIdentity">;
}
