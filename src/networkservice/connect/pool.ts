// One gRPC channel per next-hop URL, shared by every connection going there (upstream `clientconn` with
// per-target reuse). Channels live until the component stops.
import { connectivityState, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import { GrpcClient } from "../../core/client.js";

export class ClientPool {
  private readonly clients = new Map<string, GrpcClient>();

  /**
   * `credentials` may be per URL: mTLS credentials that report each handshake's peer certificate must know
   * which URL they dialled (see Security.channelCredentials).
   */
  constructor(
    private readonly credentials?: ChannelCredentials | ((url: string) => ChannelCredentials),
    private readonly options: ChannelOptions = {},
  ) {}

  get(url: string): GrpcClient {
    let c = this.clients.get(url);
    if (!c) {
      const creds = typeof this.credentials === "function" ? this.credentials(url) : this.credentials;
      this.clients.set(url, (c = new GrpcClient(url, this.options, creds)));
    }
    return c;
  }

  /**
   * The peer at `url` is up again (it registered): a channel to it still in reconnect backoff would fail
   * every call at once until its next attempt, so it is dropped and the next call dials now.
   */
  peerUp(url: string): void {
    if (
      this.clients.get(url)?.raw.getChannel().getConnectivityState(false) ===
      connectivityState.TRANSIENT_FAILURE
    )
      this.drop(url);
  }

  /** Drops a channel after its peer went away, so the next call dials afresh. */
  drop(url: string): void {
    this.clients.get(url)?.close();
    this.clients.delete(url);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
