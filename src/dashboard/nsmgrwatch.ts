// One nsmgr's connections, kept current over its MonitorConnections stream (every connection: the dashboard's
// identity must be in the nsmgr's --monitor-see-all). When the stream breaks (the nsmgr restarts or goes
// away) the last view is kept, marked stale by the status, and the watch dials again with backoff; the next
// INITIAL_STATE_TRANSFER replaces the view.
import {
  ConnectionEventType,
  MonitorConnectionService,
  type Connection,
  type ConnectionEvent,
} from "../api/connection.js";
import type { Security } from "../components/security.js";
import { GrpcClient } from "../core/client.js";
import { isServiceError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { Backoff, sleep } from "./backoff.js";
import type { NsmgrSnapshot } from "./graph.js";
import { spiffeName } from "./records.js";
import type { WatchStatus } from "./types.js";

export class NsmgrWatch {
  private status: WatchStatus = "connecting";
  private error: string | undefined;
  private learnt: string | undefined;
  private readonly conns = new Map<string, Connection>();
  private readonly abort = new AbortController();
  private readonly backoff = new Backoff();
  private client: GrpcClient | undefined;

  constructor(
    readonly url: string,
    /** The name given with the URL (name=url); else it is learnt. */
    private readonly given: string | undefined,
    private readonly security: Security,
    private readonly onChange: () => void,
    private readonly log: Logger,
  ) {}

  /** Given, or what its connections (its own path segment) or its certificate (mTLS) say. */
  get name(): string | undefined {
    return this.given ?? this.learnt;
  }

  snapshot(): NsmgrSnapshot {
    return {
      url: this.url,
      ...(this.name !== undefined ? { name: this.name } : {}),
      status: this.status,
      ...(this.error !== undefined ? { error: this.error } : {}),
      connections: [...this.conns.values()],
    };
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.abort.abort();
    this.client?.close();
  }

  private async run(): Promise<void> {
    const { url, security } = this;
    const client = new GrpcClient(url, security.channelOptions(), security.channelCredentials(url));
    this.client = client;
    while (!this.abort.signal.aborted) {
      let why: string;
      try {
        await this.follow(client);
        why = "the stream ended";
      } catch (err) {
        why = isServiceError(err) ? err.details : (err as Error).message;
      }
      if (this.abort.signal.aborted) return;
      this.lost(why);
      await sleep(this.backoff.delay(), this.abort.signal);
    }
  }

  private async follow(client: GrpcClient): Promise<void> {
    const metadata = await this.security.callMetadata(undefined, this.url, client);
    const stream = client.serverStream(
      MonitorConnectionService.monitorConnections,
      { pathSegments: [], networkServices: [] },
      { metadata, signal: this.abort.signal },
    );
    for await (const ev of stream) this.apply(ev);
  }

  private apply(ev: ConnectionEvent): void {
    if (ev.type === ConnectionEventType.INITIAL_STATE_TRANSFER) {
      this.conns.clear();
      if (this.status !== "up") this.log.info({ url: this.url }, "watching the nsmgr's connections");
      this.status = "up";
      this.error = undefined;
      this.backoff.reset();
      const peer = this.security.peerOf(this.url)?.spiffeId;
      if (peer) this.learnt ??= spiffeName(peer);
    }
    for (const c of Object.values(ev.connections)) {
      if (ev.type === ConnectionEventType.DELETE) this.conns.delete(c.id);
      else this.conns.set(c.id, c);
      // Its own segment names it for certain: prefer that over a certificate's path.
      const own = c.path?.pathSegments[c.path.index]?.name;
      if (own) this.learnt = own;
    }
    this.onChange();
  }

  private lost(why: string): void {
    // Once per outage: retries that fail the same way are debug.
    if (this.status === "up")
      this.log.warn({ url: this.url, err: why }, "lost the nsmgr's connections stream");
    else if (this.status === "connecting") this.log.warn({ url: this.url, err: why }, "nsmgr not reachable");
    else this.log.debug({ url: this.url, err: why }, "nsmgr still not reachable");
    const changed = this.status !== "unreachable" || this.error !== why;
    this.status = "unreachable";
    this.error = why;
    if (changed) this.onChange();
  }
}
