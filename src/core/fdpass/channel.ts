// Client side of descriptor passing: channel credentials that put an FdSocket under whatever the wrapped
// credentials do (TLS or plaintext) on unix targets, and give the chain the current connection to send
// descriptors on (upstream: grpcfd.TransportCredentials + PerRPCCredentials).
import type { Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { adoptUnixSocket } from "./adopt.js";
import { closeFd, dupFd } from "./files.js";
import type { FdSocket, FdTransceiver } from "./socket.js";

type Connector = ReturnType<grpc.ChannelCredentials["_createSecureConnector"]>;
type Target = Parameters<grpc.ChannelCredentials["_createSecureConnector"]>[0];

export class FdChannelCredentials extends grpc.ChannelCredentials implements FdTransceiver {
  private current: FdSocket | undefined;
  // Descriptors asked to go before the channel has a connection: they go with the first one.
  private early: number[] = [];

  constructor(private readonly inner: grpc.ChannelCredentials) {
    super();
  }

  override compose(callCredentials: grpc.CallCredentials): grpc.ChannelCredentials {
    return new FdChannelCredentials(this.inner.compose(callCredentials));
  }

  _isSecure(): boolean {
    return this.inner._isSecure();
  }

  // One channel per instance: grpc-js must not share a subchannel (and its descriptors) between channels.
  _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(
    target: Target,
    options: grpc.ChannelOptions,
    call?: grpc.CallCredentials,
  ): Connector {
    const c = this.inner._createSecureConnector(target, options, call);
    if (target.scheme !== "unix") return c;
    return {
      connect: (socket: Socket) => {
        const fds = adoptUnixSocket(socket);
        this.current = fds;
        for (const fd of this.early.splice(0)) {
          fds.sendFd(fd);
          closeFd(fd);
        }
        fds.once("close", () => this.current === fds && (this.current = undefined));
        return c.connect(fds as unknown as Socket);
      },
      waitForReady: () => c.waitForReady(),
      getCallCredentials: () => c.getCallCredentials(),
      destroy: () => c.destroy(),
    };
  }

  sendFd(fd: number): void {
    if (this.current && !this.current.destroyed) return this.current.sendFd(fd);
    this.early.push(dupFd(fd));
  }

  recvFd(inodeUrl: string, signal?: AbortSignal): Promise<number> {
    if (!this.current) return Promise.reject(new Error(`no connection to receive ${inodeUrl} on`));
    return this.current.recvFd(inodeUrl, signal);
  }
}
