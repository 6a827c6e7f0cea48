// Client side of registration (upstream registry `refresh` + `retry`): register, then re-register at 2/3 of
// the granted lifetime; retry every 200 ms while the registry is unreachable; unregister on stop. It also
// watches its own record: when the watch breaks (the nsmgr or registry restarted and may have lost it) or the
// record is deleted, it registers again at once instead of waiting for the next refresh (spec §3).
import type { Metadata } from "@grpc/grpc-js";
import type { NetworkServiceEndpoint } from "../api/registry.js";
import type { Logger } from "../core/log.js";
import { timestampToMs } from "../core/time.js";
import { NetworkServiceEndpointRegistryService } from "../api/registry.js";
import { endpoint, type RegistryClient } from "./client.js";

export const retryIntervalMs = 200;

export class Registration {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private cancelWatch?: () => void;
  current?: NetworkServiceEndpoint;

  constructor(
    private readonly client: RegistryClient,
    private readonly nse: NetworkServiceEndpoint,
    private readonly log: Logger,
    /** Tokens and path for each call (see registryCallMetadata). */
    private readonly metadata: () => Promise<Metadata | undefined> = () => Promise.resolve(undefined),
    /** Runs before registering again after the watch broke (an endpoint re-registers its services). */
    private readonly again?: () => Promise<void>,
  ) {}

  /** Registers (retrying until `timeoutMs`) and keeps the registration fresh. */
  async start(timeoutMs = 15_000): Promise<NetworkServiceEndpoint> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.register();
      } catch (err) {
        if (Date.now() + retryIntervalMs > end || this.stopped) throw err;
        await new Promise((r) => setTimeout(r, retryIntervalMs));
      }
    }
  }

  private pendingAgain = false;

  private async register(): Promise<NetworkServiceEndpoint> {
    if (this.pendingAgain && this.again) await this.again();
    this.pendingAgain = false;
    const got = await this.client.registerEndpoint(
      { ...this.nse, expirationTime: undefined },
      { timeoutMs: 5000, metadata: await this.metadata() },
    );
    this.current = got;
    this.schedule(
      got.expirationTime ? ((timestampToMs(got.expirationTime) - Date.now()) * 2) / 3 : undefined,
    );
    if (!this.cancelWatch) this.watch();
    return got;
  }

  private watch(): void {
    if (this.stopped) return;
    const opened = Date.now();
    const stream = this.client.grpc.serverStream(NetworkServiceEndpointRegistryService.find, {
      networkServiceEndpoint: endpoint({ name: this.nse.name }),
      watch: true,
    });
    this.cancelWatch = () => stream.cancel();
    void (async () => {
      let why = "the registration watch ended";
      try {
        for await (const r of stream) {
          if (r.deleted && r.networkServiceEndpoint?.name === this.nse.name && !this.stopped) {
            why = "the registry deleted the registration";
            break;
          }
        }
      } catch (err) {
        why = `the registration watch broke: ${(err as Error).message}`;
      }
      stream.cancel();
      this.cancelWatch = undefined;
      if (this.stopped) return;
      this.log.warn({ nse: this.nse.name, why }, "registering again");
      // Register at once, retrying every 200 ms; a successful register opens the next watch.
      this.pendingAgain = true;
      // A watch refused or ended at once (a registry that does not watch) must not become a busy loop.
      this.schedule(Date.now() - opened < 1000 ? retryIntervalMs : 0);
    })();
  }

  private schedule(delayMs: number | undefined): void {
    clearTimeout(this.timer);
    if (this.stopped || delayMs === undefined) return;
    this.timer = setTimeout(
      () => {
        this.register().catch((err: unknown) => {
          this.log.warn({ nse: this.nse.name, err }, "registration refresh failed, retrying");
          this.schedule(retryIntervalMs);
        });
      },
      Math.max(0, delayMs),
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.cancelWatch?.();
    const metadata = await this.metadata();
    await this.client
      .unregisterEndpoint({ name: this.nse.name }, { timeoutMs: 2000, metadata })
      .catch((err: unknown) => this.log.warn({ nse: this.nse.name, err }, "unregister failed"));
  }
}
