// `heal` (client, after begin; spec §3): keeps an established connection alive when a component dies.
//   - Control plane: the client watches its own connections through its nsmgr's MonitorConnections. A DOWN
//     event, a connection the nsmgr no longer knows (it restarted), or a broken stream means a hop lost the
//     connection: the client *restores* it, re-requesting the same path (same forwarder, same endpoint, same
//     addresses) every `retryMs` until it works. The data path is left alone meanwhile. A DELETE (a hop
//     closed it: its service changed, it timed out) means the old path is not wanted: reselect.
//   - Data plane: a liveness check pings across the connection (every 200 ms, 1 s timeout, upstream's
//     defaults), and once after every failed restore. A dead data path means *reselect*: request again with
//     RESELECT_REQUESTED, so every hop closes the old path and the nsmgr picks a forwarder and an endpoint
//     afresh. While the data path works, a restore goes on until the path is back (as upstream's heal);
//     only a client without liveness check gives up restoring after `restoreMs` (3 s) and reselects.
import {
  ConnectionEventType,
  MonitorConnectionService,
  State,
  type Connection,
} from "../../api/connection.js";
import { status } from "@grpc/grpc-js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { Logger } from "../../core/log.js";
import { toStatusError } from "../../core/errors.js";
import type { PingNetns } from "../../dataplane/index.js";
import { eventFactory, type EventFactory } from "../begin/begin.js";
import type { ClientPool } from "../connect/pool.js";
import { LivenessMonitor, kernelLivenessCheck } from "./liveness.js";
import { recordHeal } from "./metrics.js";

const healKey = Symbol("heal.state");

export interface HealOptions {
  /** This client's name: its path segment, by which it selects its connections on the nsmgr's monitor. */
  name: string;
  /** The nsmgr the client talks to. */
  nsmgrUrl: string;
  pool: ClientPool;
  log: Logger;
  /** Data-plane liveness (KERNEL connections): the client's namespace, or undefined to disable. */
  liveness?: { netns: PingNetns; intervalMs?: number; timeoutMs?: number };
  /** Pause between restore attempts (default 100 ms). */
  retryMs?: number;
  /** Without liveness check: how long a restore is retried before the client reselects (default 3 s). */
  restoreMs?: number;
  /** Told of every completed heal (metrics, tests measuring how long the control plane was out). */
  onHealed?: (e: HealEvent) => void;
}

/** A completed heal: which connection, how, and when the control plane served it again. */
export interface HealEvent {
  connId: string;
  kind: "restore" | "reselect";
  /** Date.now() when the healing Request succeeded. */
  at: number;
  /** From the client noticing the break to that success. */
  ms: number;
  attempts: number;
}

interface Healing {
  factory: EventFactory;
  /** The connection as last established (for a quick data-path check while restoring). */
  conn: Connection;
  liveness?: LivenessMonitor;
  busy: boolean;
  closed: boolean;
  /** A reselect asked for while a restore ran: done right after it. */
  upgrade?: string;
  kind?: "restore" | "reselect";
}

/** What the heal element exposes for tests and metrics. */
export interface HealElement extends NetworkServiceElement {
  /** Heals done so far, by kind. */
  readonly counts: { restore: number; reselect: number };
  /** Whether the connection is being healed now (the live-connections gauge's HEALING state). */
  healing(id: string): boolean;
  stop(): void;
}

export function healClient(opts: HealOptions): HealElement {
  const retryMs = opts.retryMs ?? 100;
  const restoreMs = opts.restoreMs ?? 3000;
  const conns = new Map<string, Healing>();
  const counts = { restore: 0, reselect: 0 };
  const monitor = new ClientMonitor(opts, (id, why, kind) => {
    const h = conns.get(id);
    if (h) void heal(id, h, kind, why);
  });

  /** One quick liveness check (a restore attempt is failing anyway: don't wait the full timeout). */
  async function dataPathAlive(conn: Connection): Promise<boolean> {
    if (!opts.liveness) return true;
    const r = await kernelLivenessCheck(conn, opts.liveness.netns, { timeoutMs: 150 }).catch(() => undefined);
    return r?.alive ?? true;
  }

  /**
   * Why a failing restore should become a reselect now, or undefined to keep restoring. Restarted hops need
   * a moment to see their forwarders and endpoints register again. With a liveness check, restoring goes on
   * while the data path works (as upstream's heal does): a forwarder that takes 10 s to come back must not
   * cost the workload its traffic. Without one, nothing tells a hop coming back from one gone for good.
   */
  async function reselectReason(
    h: Healing,
    started: number,
    notFoundSince: number | undefined,
  ): Promise<string | undefined> {
    if (!opts.liveness) return Date.now() - started > restoreMs ? "keeps failing" : undefined;
    // Unregistered past the time a restarted nsmgr needs to see it again: the endpoint stopped or its pod
    // went, even if the forwarder's handle keeps its namespace answering pings.
    if (notFoundSince !== undefined && Date.now() - notFoundSince > restoreMs)
      return "the path's endpoint stays unregistered";
    // The control plane is down *and* the data path is dead: no point in waiting for the old path.
    if (!(await dataPathAlive(h.conn))) return "the data path is dead";
    return undefined;
  }

  async function heal(id: string, h: Healing, kind: "restore" | "reselect", why: string): Promise<void> {
    if (h.closed) return;
    if (h.busy) {
      // A hop closed the connection while we restore it: reselect once the restore is through. (A DELETE
      // during a reselect is the nsmgr closing the old path for it: nothing to add.)
      if (kind === "reselect" && h.kind === "restore") h.upgrade = why;
      return;
    }
    h.kind = kind;
    h.busy = true;
    h.liveness?.stop();
    const log = opts.log.child({ connId: id });
    log.warn({ why, kind }, "healing the connection");
    const started = Date.now();
    /** Since when every restore has failed with NOT_FOUND (the path's endpoint unregistered). */
    let notFoundSince: number | undefined;
    try {
      for (let attempt = 0; !h.closed; attempt++) {
        try {
          const conn = await h.factory.request((c) => {
            if (kind === "reselect") {
              c.state = State.RESELECT_REQUESTED;
              // Choose the endpoint afresh too: the old one may be the reason.
              c.networkServiceEndpointName = "";
            }
          });
          counts[kind]++;
          const at = Date.now();
          const e: HealEvent = { connId: id, kind, at, ms: at - started, attempts: attempt + 1 };
          log.info({ kind, attempts: e.attempts, ms: e.ms }, "connection healed");
          recordHeal(conn.networkService, kind, e.ms);
          h.conn = conn;
          h.liveness?.update(conn);
          try {
            opts.onHealed?.(e);
          } catch (err) {
            // The heal worked: a failing listener must not make it look failed (and run it again).
            log.warn({ err }, "onHealed listener failed");
          }
          return;
        } catch (err) {
          const e = toStatusError(err);
          notFoundSince = e.code === status.NOT_FOUND ? (notFoundSince ?? Date.now()) : undefined;
          const why =
            kind === "restore" && !h.closed ? await reselectReason(h, started, notFoundSince) : undefined;
          if (why) {
            log.warn({ err: e.details }, `restore failed and ${why}: reselecting`);
            kind = "reselect";
            h.kind = kind;
            continue;
          }
          if (attempt % 20 === 0) log.warn({ err: e.details, attempt }, `${kind} failed; retrying`);
          await new Promise((r) => setTimeout(r, retryMs));
        }
      }
    } finally {
      h.busy = false;
      if (!h.closed) h.liveness?.start();
    }
    const upgrade = h.upgrade;
    h.upgrade = undefined;
    if (upgrade && !h.closed) await heal(id, h, "reselect", upgrade);
  }

  return {
    name: "heal",
    counts,
    healing: (id) => conns.get(id)?.busy ?? false,
    stop: () => {
      for (const h of conns.values()) {
        h.closed = true;
        h.liveness?.stop();
      }
      conns.clear();
      monitor.close();
    },
    async request(req, ctx, next) {
      const out = await next.request(req, ctx);
      const id = out.id;
      const factory = eventFactory(ctx);
      if (!factory || ctx.connMeta(true).has(healKey)) {
        const known = conns.get(id);
        if (known) known.conn = out;
        known?.liveness?.update(out);
        return out;
      }
      const h: Healing = { factory, conn: out, busy: false, closed: false };
      if (opts.liveness) {
        h.liveness = new LivenessMonitor(out, {
          netns: opts.liveness.netns,
          ...(opts.liveness.intervalMs ? { intervalMs: opts.liveness.intervalMs } : {}),
          ...(opts.liveness.timeoutMs ? { timeoutMs: opts.liveness.timeoutMs } : {}),
          onDead: (_c, report) => heal(id, h, "reselect", `data path: ${report.reason}`),
          onError: (err) => opts.log.warn({ connId: id, err }, "liveness check failed to run"),
        });
        h.liveness.start();
      }
      ctx.connMeta(true).set(healKey, h);
      conns.set(id, h);
      monitor.watch(id);
      return out;
    },
    async close(conn, ctx, next) {
      const h = conns.get(conn.id);
      if (h) {
        h.closed = true;
        h.liveness?.stop();
        conns.delete(conn.id);
        monitor.unwatch(conn.id);
      }
      ctx.connection?.client.delete(healKey);
      await next.close(conn, ctx);
    },
  };
}

/**
 * One MonitorConnections stream to the nsmgr for all of a client's connections (selected by the client's
 * path-segment name); reports connections that a hop lost.
 */
class ClientMonitor {
  private readonly ids = new Set<string>();
  private cancel: (() => void) | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  /** The current stream's token: a stream that was replaced or stopped reports nothing. */
  private current: object | undefined;

  constructor(
    private readonly opts: HealOptions,
    private readonly lost: (id: string, why: string, kind: "restore" | "reselect") => void,
  ) {}

  watch(id: string): void {
    this.ids.add(id);
    if (!this.cancel && !this.retry) this.subscribe();
  }

  unwatch(id: string): void {
    this.ids.delete(id);
    if (this.ids.size === 0) this.stopStream();
  }

  close(): void {
    this.closed = true;
    this.stopStream();
  }

  private stopStream(): void {
    this.current = undefined;
    this.cancel?.();
    this.cancel = undefined;
    clearTimeout(this.retry);
    this.retry = undefined;
  }

  private subscribe(): void {
    const stream = this.opts.pool
      .get(this.opts.nsmgrUrl)
      .serverStream(MonitorConnectionService.monitorConnections, {
        pathSegments: [{ name: this.opts.name, id: "", token: "", expires: undefined, metrics: {} }],
        networkServices: [],
      });
    this.cancel = () => stream.cancel();
    const me = {};
    this.current = me;
    void (async () => {
      let why = "the nsmgr's monitor stream ended";
      try {
        for await (const ev of stream) {
          const seen = new Set<string>();
          for (const c of Object.values(ev.connections)) {
            const id = this.mine(c);
            if (!id) continue;
            seen.add(id);
            // A hop closed it (its service changed, it timed out): the old path is not wanted any more.
            if (ev.type === ConnectionEventType.DELETE)
              this.lost(id, "the nsmgr closed the connection", "reselect");
            else if (c.state === State.DOWN) this.lost(id, "a hop reports the connection DOWN", "restore");
          }
          // A restarted nsmgr does not know our connections: its first snapshot lacks them.
          if (ev.type === ConnectionEventType.INITIAL_STATE_TRANSFER) {
            for (const id of this.ids)
              if (!seen.has(id)) this.lost(id, "the nsmgr does not know the connection", "restore");
          }
        }
      } catch (err) {
        why = `the nsmgr's monitor stream broke: ${(err as Error).message}`;
      }
      if (this.closed || this.ids.size === 0 || this.current !== me) return;
      for (const id of this.ids) this.lost(id, why, "restore");
      this.cancel = undefined;
      this.retry = setTimeout(() => {
        this.retry = undefined;
        if (!this.closed && this.ids.size > 0) this.subscribe();
      }, this.opts.retryMs ?? 100);
      this.retry.unref();
    })();
  }

  /** The id of our connection this monitored connection is (our path segment's id), if it is ours. */
  private mine(c: Connection): string | undefined {
    const seg = c.path?.pathSegments.find((s) => s.name === this.opts.name && this.ids.has(s.id));
    return seg?.id;
  }
}
