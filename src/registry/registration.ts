// Client side of registration (upstream registry `refresh` + `retry`): register, then re-register at 2/3 of
// the granted lifetime; retry every 200 ms while the registry is unreachable; unregister on stop.
import type { Metadata } from "@grpc/grpc-js";
import type { NetworkServiceEndpoint } from "../api/registry.js";
import type { Logger } from "../core/log.js";
import { timestampToMs } from "../core/time.js";
import type { RegistryClient } from "./client.js";

export const retryIntervalMs = 200;

export class Registration {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  current?: NetworkServiceEndpoint;

  constructor(
    private readonly client: RegistryClient,
    private readonly nse: NetworkServiceEndpoint,
    private readonly log: Logger,
    /** Tokens and path for each call (see registryCallMetadata). */
    private readonly metadata: () => Promise<Metadata | undefined> = () => Promise.resolve(undefined),
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

  private async register(): Promise<NetworkServiceEndpoint> {
    const got = await this.client.registerEndpoint(
      { ...this.nse, expirationTime: undefined },
      { timeoutMs: 5000, metadata: await this.metadata() },
    );
    this.current = got;
    this.schedule(
      got.expirationTime ? ((timestampToMs(got.expirationTime) - Date.now()) * 2) / 3 : undefined,
    );
    return got;
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
    const metadata = await this.metadata();
    await this.client
      .unregisterEndpoint({ name: this.nse.name }, { timeoutMs: 2000, metadata })
      .catch((err: unknown) => this.log.warn({ nse: this.nse.name, err }, "unregister failed"));
  }
}
