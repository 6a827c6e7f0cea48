// The NSC as a library and as `nsm nsc`: requests network services for a network namespace, keeps them
// refreshed, closes them on exit. Chain, top to bottom:
//   mechanism preference (KERNEL) → metrics → updatepath → begin → heal (opt-in) → refresh → excludedprefixes
//   → authorize (client policies on every response) → clienturl (nsmgr) → connect
import { Connection, State } from "../api/connection.js";
import { chain, element } from "../core/chain.js";
import { CallContext } from "../core/context.js";
import { annotateSpan, serverSpan } from "../observability/tracing/spans.js";
import { componentLogger } from "../core/log.js";
import { beginClient } from "../networkservice/begin/begin.js";
import { setClientUrl } from "../networkservice/clienturl/clienturl.js";
import { connect } from "../networkservice/connect/connect.js";
import { ClientPool } from "../networkservice/connect/pool.js";
import { metricsClient } from "../networkservice/metrics/metrics.js";
import { trackConnections } from "../networkservice/metrics/connections.js";
import { kernelOffer } from "../networkservice/mechanisms/kernel.js";
import { sendfdClient } from "../networkservice/mechanisms/sendfd/sendfd.js";
import { preferenceClient } from "../networkservice/mechanisms/mechanisms.js";
import { refreshClient } from "../networkservice/refresh/refresh.js";
import { healClient, type HealElement, type HealEvent } from "../networkservice/heal/heal.js";
import { excludedPrefixesClient } from "../networkservice/excludedprefixes/excludedprefixes.js";
import { emptyConnection, updatePathClient } from "../networkservice/updatepath/updatepath.js";
import { invalidArgument } from "../core/errors.js";
import type { Security } from "./security.js";

export interface ClientOptions {
  name: string;
  nsmgrUrl: string;
  /** The client's network namespace (default: its own). */
  netnsPath?: string;
  labels?: Record<string, string>;
  requestTimeoutMs?: number;
  /**
   * Heal connections when a component dies (spec §3): restore through the nsmgr's monitor, reselect when the
   * liveness check (`liveness: false` disables it) finds the data path dead. Off unless set.
   */
  heal?: {
    liveness?: boolean;
    livenessIntervalMs?: number;
    livenessTimeoutMs?: number;
    retryMs?: number;
    onHealed?: (e: HealEvent) => void;
  };
  security: Security;
}

export interface ServiceRequest {
  service: string;
  ifname?: string;
  labels?: Record<string, string>;
  /** Connection id; default `<name>-<i>` so a restarted client finds its connection again. */
  id?: string;
}

/** Parses upstream's nsurl form: kernel://<service>/<ifname>?label=value&… (spec §1.9). */
export function parseServiceUrl(text: string): ServiceRequest {
  const m = /^kernel:\/\/([^/?]+)(?:\/([^?]*))?(?:\?(.*))?$/.exec(text);
  if (!m) {
    if (/^[^:/?]+$/.test(text)) return { service: text };
    throw invalidArgument(
      "service",
      `"${text}" is neither a service name nor kernel://<service>/<ifname>?label=value`,
    );
  }
  const labels = Object.fromEntries(new URLSearchParams(m[3] ?? "").entries());
  return { service: decodeURIComponent(m[1]!), ifname: m[2] ? decodeURIComponent(m[2]) : undefined, labels };
}

export class NsmClient {
  private readonly pool: ClientPool;
  private readonly begin;
  private readonly chain;
  // Our namespace as a file:// URL: sendfd sends it as a descriptor on a unix socket, or its inode URL on TCP.
  private readonly netnsUrl: string;
  private readonly log;
  private count = 0;
  private readonly untrack: () => void;
  /** The heal element, when healing is on (its counts say how often it restored or reselected). */
  readonly heal: HealElement | undefined;

  constructor(private readonly opts: ClientOptions) {
    this.log = componentLogger("nsc", opts.name);
    this.netnsUrl = `file://${opts.netnsPath ?? "/proc/self/ns/net"}`;
    this.pool = new ClientPool(
      (url) => opts.security.channelCredentials(url),
      opts.security.channelOptions(),
    );
    this.begin = beginClient(this.log);
    const h = opts.heal;
    this.heal = h
      ? healClient({
          name: opts.name,
          nsmgrUrl: opts.nsmgrUrl,
          pool: this.pool,
          log: this.log,
          ...(h.retryMs ? { retryMs: h.retryMs } : {}),
          ...(h.onHealed ? { onHealed: h.onHealed } : {}),
          ...(h.liveness === false
            ? {}
            : {
                liveness: {
                  netns: opts.netnsPath ?? "/proc/self/ns/net",
                  ...(h.livenessIntervalMs ? { intervalMs: h.livenessIntervalMs } : {}),
                  ...(h.livenessTimeoutMs ? { timeoutMs: h.livenessTimeoutMs } : {}),
                },
              }),
        })
      : undefined;
    this.untrack = trackConnections({
      component: "nsc",
      connections: () => this.begin.connections(),
      stateOf: (c) => (this.heal?.healing(c.id) ? "HEALING" : (State[c.state] ?? "UNKNOWN")),
    });
    this.chain = chain([
      metricsClient("nsc"),
      updatePathClient(opts.name),
      this.begin,
      ...(this.heal ? [this.heal] : []),
      refreshClient(),
      excludedPrefixesClient(),
      opts.security.authorizeClient(),
      element("clienturl", (req, ctx, next) => {
        setClientUrl(ctx, opts.nsmgrUrl);
        return next.request(req, ctx);
      }),
      sendfdClient(
        (url) => this.pool.get(url).fds,
        (_ctx, url) => url === this.netnsUrl,
      ),
      connect({ pool: this.pool, security: opts.security, requestTimeoutMs: opts.requestTimeoutMs }),
    ]);
  }

  /** Requests a service; resolves with the established connection (addresses, routes, path). */
  async request(r: ServiceRequest): Promise<Connection> {
    const id = r.id ?? `${this.opts.name}-${this.count++}`;
    // Asking again for a connection we hold is a refresh: send it as we last saw it (its path and ids).
    const held = this.begin.get(id);
    const conn = held
      ? { ...Connection.fromPartial(held), labels: { ...held.labels, ...r.labels } }
      : { ...emptyConnection(), id, networkService: r.service, labels: { ...this.opts.labels, ...r.labels } };
    const ctx = new CallContext(this.log.child({ connId: id }), new AbortController().signal);
    const mech = preferenceClient("mechanisms/kernel", () => [
      kernelOffer({ name: r.ifname, inodeURL: this.netnsUrl }),
    ]);
    // The root of the connection's trace: every hop's spans hang below it.
    return serverSpan(
      ctx,
      "nsc/Request",
      conn,
      async () => {
        const established = await mech.request(
          { connection: conn, mechanismPreferences: [] },
          ctx,
          this.chain,
        );
        annotateSpan(ctx, established);
        return established;
      },
      { root: true },
    );
  }

  /** The client's connections as last refreshed. */
  connections(): Connection[] {
    return this.begin.connections();
  }

  async close(id: string): Promise<void> {
    const conn = this.begin.get(id);
    if (!conn) return;
    const ctx = new CallContext(this.log.child({ connId: id }), new AbortController().signal);
    const c = Connection.fromPartial(conn);
    await serverSpan(ctx, "nsc/Close", c, () => this.chain.close(c, ctx), { root: true });
  }

  async closeAll(): Promise<void> {
    this.heal?.stop();
    await Promise.all(this.connections().map((c) => this.close(c.id)));
    this.pool.close();
    this.untrack();
  }
}
