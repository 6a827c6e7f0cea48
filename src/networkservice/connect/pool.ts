// One gRPC channel per next-hop URL, shared by every connection going there (upstream `clientconn` with
// per-target reuse). URLs come from registrations and requests, i.e. from other parties, so the pool is
// bounded: a dial policy says which URLs may be dialled at all, and past `maxChannels` the least recently used
// channel that carries no call is closed to make room.
import { BlockList, isIP } from "node:net";
import {
  InterceptingCall,
  connectivityState,
  status,
  type ChannelCredentials,
  type ChannelOptions,
  type Interceptor,
  type Listener,
  type Metadata,
  type MetadataValue,
} from "@grpc/grpc-js";
import { GrpcClient } from "../../core/client.js";
import { StatusError, permissionDenied } from "../../core/errors.js";
import { parseEndpoint } from "../../core/url.js";
import { tokenExpiresKey, tokenKey } from "../../security/token.js";

/** Channels a pool keeps open at most. */
export const defaultMaxChannels = 1024;

/** Whether a URL may be dialled. */
export type DialPolicy = (url: string) => boolean;

/** The default: any unix:// socket and any tcp:// address; nothing else (no dns:, xds:, inode:, …). */
export const defaultDialPolicy: DialPolicy = (url) => /^(unix|tcp):\/\//.test(url);

export interface ClientPoolOptions {
  /** Default defaultMaxChannels. */
  maxChannels?: number;
  /** Default defaultDialPolicy; see dialPolicy(). */
  allowDial?: DialPolicy;
  /**
   * Metadata (this component's token) for calls that carry none, as upstream dials with per-RPC token
   * credentials: monitor streams need it so the next hop knows who watches (authmonitor). Without it such
   * calls carry the last token this component sent on the channel.
   */
  callMetadata?: (url: string) => Promise<Metadata> | Metadata;
}

/**
 * A dial policy from rules: "unix" (any unix socket), "unix:/run/nsm" (sockets under that directory),
 * "tcp" (any address), "tcp:198.18.0.0/15" or "tcp:fd00::/8" (IP addresses in that range; host names never
 * match a range). A URL is allowed when some rule matches. Throws on a rule it cannot read.
 */
export function dialPolicy(rules: readonly string[]): DialPolicy {
  let anyUnix = false;
  let anyTcp = false;
  const dirs: string[] = [];
  const ranges = new BlockList();
  for (const rule of rules) {
    const [scheme, arg] = rule.includes(":")
      ? [rule.slice(0, rule.indexOf(":")), rule.slice(rule.indexOf(":") + 1)]
      : [rule, ""];
    if (scheme === "unix" && arg === "") anyUnix = true;
    else if (scheme === "unix" && arg.startsWith("/")) dirs.push(arg.endsWith("/") ? arg : `${arg}/`);
    else if (scheme === "tcp" && arg === "") anyTcp = true;
    else if (scheme === "tcp") {
      const m = /^\[?([0-9a-fA-F:.]+)\]?\/(\d{1,3})$/.exec(arg);
      const family = m ? isIP(m[1]!) : 0;
      const bits = m ? Number(m[2]) : -1;
      if (!m || family === 0 || bits > (family === 4 ? 32 : 128))
        throw new Error(`dial rule "${rule}": want tcp:<address>/<prefix length>, e.g. tcp:198.18.0.0/15`);
      ranges.addSubnet(m[1]!, bits, family === 4 ? "ipv4" : "ipv6");
    } else {
      throw new Error(`dial rule "${rule}": want unix, unix:/dir, tcp or tcp:<cidr>`);
    }
  }
  return (url) => {
    let ep;
    try {
      ep = parseEndpoint(url);
    } catch {
      return false;
    }
    if (ep.kind === "unix") return anyUnix || dirs.some((d) => ep.path.startsWith(d));
    if (anyTcp) return true;
    const family = isIP(ep.host);
    return family !== 0 && ranges.check(ep.host, family === 4 ? "ipv4" : "ipv6");
  };
}

/** Calls started on a channel and not yet ended: a channel with calls is never evicted. */
interface Calls {
  active: number;
}

interface Entry {
  client: GrpcClient;
  calls: Calls;
}

export class ClientPool {
  /** In least-recently-used order: a use moves an entry to the end. */
  private readonly clients = new Map<string, Entry>();
  private readonly maxChannels: number;
  private readonly allowDial: DialPolicy;

  /**
   * `credentials` may be per URL: mTLS credentials that report each handshake's peer certificate must know
   * which URL they dialled (see Security.channelCredentials).
   */
  constructor(
    private readonly credentials?: ChannelCredentials | ((url: string) => ChannelCredentials),
    private readonly options: ChannelOptions = {},
    private readonly opts: ClientPoolOptions = {},
  ) {
    this.maxChannels = opts.maxChannels ?? defaultMaxChannels;
    this.allowDial = opts.allowDial ?? defaultDialPolicy;
  }

  /**
   * The channel to `url`. Throws PERMISSION_DENIED for a URL the dial policy refuses, RESOURCE_EXHAUSTED when
   * maxChannels channels all carry calls.
   */
  get(url: string): GrpcClient {
    const hit = this.clients.get(url);
    if (hit) {
      this.clients.delete(url);
      this.clients.set(url, hit);
      return hit.client;
    }
    if (!this.allowDial(url))
      throw permissionDenied(`dial ${url}: not allowed by this component's dial policy`);
    if (this.clients.size >= this.maxChannels) this.evictIdle(url);
    const creds = typeof this.credentials === "function" ? this.credentials(url) : this.credentials;
    const calls: Calls = { active: 0 };
    const client = new GrpcClient(
      url,
      { ...this.options, interceptors: [this.interceptor(url, calls)] },
      creds,
    );
    this.clients.set(url, { client, calls });
    return client;
  }

  /** Open channels (for tests and metrics). */
  get size(): number {
    return this.clients.size;
  }

  /**
   * The peer at `url` is up again (it registered): a channel to it still in reconnect backoff would fail
   * every call at once until its next attempt, so it is dropped and the next call dials now.
   */
  peerUp(url: string): void {
    if (
      this.clients.get(url)?.client.raw.getChannel().getConnectivityState(false) ===
      connectivityState.TRANSIENT_FAILURE
    )
      this.drop(url);
  }

  /** Drops a channel after its peer went away, so the next call dials afresh. */
  drop(url: string): void {
    this.clients.get(url)?.client.close();
    this.clients.delete(url);
  }

  close(): void {
    for (const e of this.clients.values()) e.client.close();
    this.clients.clear();
  }

  /** Closes the least recently used channel that carries no call; throws when every one does. */
  private evictIdle(url: string): void {
    for (const [u, e] of this.clients) {
      if (e.calls.active > 0) continue;
      e.client.close();
      this.clients.delete(u);
      return;
    }
    throw new StatusError(
      status.RESOURCE_EXHAUSTED,
      `dial ${url}: all ${this.maxChannels} channels of this component carry calls (maxChannels)`,
    );
  }

  /**
   * Counts the channel's calls in flight, and gives calls that carry no token one: callMetadata's, else the
   * last one this component sent on this channel (its own token, to the same peer). Monitor streams are
   * opened after a Request on the same channel, so the peer learns who watches even where nobody passed
   * callMetadata.
   */
  private interceptor(url: string, calls: Calls): Interceptor {
    const token = this.opts.callMetadata;
    let last: { token: MetadataValue[]; expires: MetadataValue[] } | undefined;
    return (options, nextCall) =>
      new InterceptingCall(nextCall(options), {
        start: (metadata, _listener, next) => {
          calls.active++;
          let ended = false;
          const tracked: Listener = {
            onReceiveStatus: (st, done) => {
              if (!ended) {
                ended = true;
                calls.active--;
              }
              done(st);
            },
          };
          const own = metadata.get(tokenKey);
          if (own.length > 0) {
            last = { token: own, expires: metadata.get(tokenExpiresKey) };
            return next(metadata, tracked);
          }
          const reuse = (): void => {
            if (!last || metadata.get(tokenKey).length > 0) return;
            for (const v of last.token) metadata.add(tokenKey, v);
            for (const v of last.expires) metadata.add(tokenExpiresKey, v);
          };
          if (!token) {
            reuse();
            return next(metadata, tracked);
          }
          Promise.resolve()
            .then(() => token(url))
            .then(
              (md) => metadata.merge(md),
              () => undefined,
            )
            .finally(() => {
              reuse(); // callMetadata failed: the last token is better than none
              next(metadata, tracked);
            });
        },
      });
  }
}
