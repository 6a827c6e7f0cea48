// One registry's NetworkServices and NetworkServiceEndpoints, kept current with Find(watch=true). After every
// (re)connect a one-off Find reconciles: records deleted while the watch was away, and not heard of since it
// came back, are dropped (as nsmgr's registry replica does). Reconnects back off while the registry is away.
import type { Metadata } from "@grpc/grpc-js";
import type { NetworkService, NetworkServiceEndpoint } from "../api/registry.js";
import type { Security } from "../components/security.js";
import { isServiceError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { RegistryClient } from "../registry/client.js";
import { Backoff, sleep } from "./backoff.js";
import type { RegistrySnapshot } from "./records.js";
import type { WatchStatus } from "./types.js";

type Kind = "ns" | "nse";

export class RegistryWatch {
  private readonly endpoints = new Map<string, NetworkServiceEndpoint>();
  private readonly services = new Map<string, NetworkService>();
  private readonly status: Record<Kind, WatchStatus> = { ns: "connecting", nse: "connecting" };
  private error: string | undefined;
  private readonly abort = new AbortController();
  private readonly client: RegistryClient;

  constructor(
    readonly url: string,
    private readonly security: Security,
    private readonly onChange: () => void,
    private readonly log: Logger,
  ) {
    this.client = new RegistryClient(url, security.channelCredentials(url), security.channelOptions());
  }

  snapshot(): RegistrySnapshot {
    const all = Object.values(this.status);
    const status: WatchStatus = all.every((s) => s === "up")
      ? "up"
      : all.includes("unreachable")
        ? "unreachable"
        : "connecting";
    return {
      url: this.url,
      status,
      ...(status !== "up" && this.error ? { error: this.error } : {}),
      endpoints: [...this.endpoints.values()],
      services: [...this.services.values()],
    };
  }

  start(): void {
    void this.follow("ns");
    void this.follow("nse");
  }

  stop(): void {
    this.abort.abort();
    this.client.close();
  }

  private async follow(kind: Kind): Promise<void> {
    const backoff = new Backoff();
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const metadata = await this.security.callMetadata(undefined, this.url, this.client.grpc);
        await this.watch(kind, metadata, () => backoff.reset());
        throw new Error("the watch ended");
      } catch (err) {
        if (signal.aborted) return;
        const why = isServiceError(err) ? err.details : (err as Error).message;
        // Once per outage: retries that fail the same way are debug.
        if (this.status[kind] === "unreachable")
          this.log.debug({ url: this.url, kind, err: why }, "registry still not reachable");
        else this.log.warn({ url: this.url, kind, err: why }, "registry watch broken");
        this.status[kind] = "unreachable";
        this.error = why;
        this.onChange();
      }
      await sleep(backoff.delay(), signal);
    }
  }

  /** Streams changes until the watch ends; `ready` once the reconciling snapshot is in. */
  private async watch(kind: Kind, metadata: Metadata, ready: () => void): Promise<void> {
    const opts = { metadata, signal: this.abort.signal };
    const since = Date.now();
    const seen = new Map<string, number>();
    const table: Map<string, NetworkService | NetworkServiceEndpoint> =
      kind === "ns" ? this.services : this.endpoints;
    const apply = (name: string, deleted: boolean, set: () => void): void => {
      seen.set(name, Date.now());
      if (deleted) table.delete(name);
      else set();
      this.onChange();
    };
    const reconcile = async (): Promise<void> => {
      const present = new Set(
        kind === "ns"
          ? (await this.client.findServices({}, opts)).map((s) => s.name)
          : (await this.client.findEndpoints({}, opts)).map((e) => e.name),
      );
      for (const name of [...table.keys()])
        if (!present.has(name) && (seen.get(name) ?? 0) < since) table.delete(name);
      this.status[kind] = "up";
      ready();
      this.onChange();
    };
    // Caught here: when the watch fails first, nothing else would wait for the snapshot.
    const reconciled = reconcile().then(
      () => undefined,
      (err: unknown) => (err instanceof Error ? err : new Error("the registry's snapshot failed")),
    );
    if (kind === "ns") {
      for await (const r of this.client.watchServices({}, opts)) {
        const ns = r.networkService;
        if (ns) apply(ns.name, r.deleted, () => this.services.set(ns.name, ns));
      }
    } else {
      for await (const r of this.client.watchEndpoints({}, opts)) {
        const nse = r.networkServiceEndpoint;
        if (nse) apply(nse.name, r.deleted, () => this.endpoints.set(nse.name, nse));
      }
    }
    const failed = await reconciled;
    if (failed) throw failed;
  }
}
