// Server side of descriptor passing: a unix listener whose connections are FdSockets, with TLS done here
// (from the same rotating SVID options grpc-js would use) and the result handed to the grpc-js server through
// a connection injector of its own, whose interceptor tags every call with the connection's key: a handler
// finds the connection its call came on (fdTransceiverOf) and the descriptors that came with it.
import { randomUUID } from "node:crypto";
import { createServer, type Server as NetServer } from "node:net";
import {
  createSecureContext,
  createServer as createTlsServer,
  TLSSocket,
  type SecureContext,
  type SecureContextOptions,
} from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { adoptUnixSocket } from "./adopt.js";
import type { FdSocket, FdTransceiver } from "./socket.js";

const byKey = new Map<string, FdSocket>();
/** Metadata that carries a call's connection key from the interceptor to the handler (never sent anywhere). */
export const connectionKeyHeader = "x-nsm-fdpass-connection";
// A client that connects and never finishes its TLS handshake must not hold a descriptor for ever.
const handshakeTimeoutMs = 10_000;

/**
 * The connection a call came on, when it is one that passes descriptors (a unix socket of ours), from the
 * key its metadata carries. Keys are random: a caller on another transport cannot name someone's connection.
 */
export function fdTransceiverOf(key: unknown): FdTransceiver | undefined {
  return typeof key === "string" ? byKey.get(key) : undefined;
}

function tagCalls(key: string): grpc.ServerInterceptor {
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, mdNext) => {
            md.set(connectionKeyHeader, key);
            mdNext(md);
          },
        }),
    });
}

/**
 * OpenSSL accepts any client certificate during the handshake and Node checks the chain afterwards, in the
 * tls.Server connection listener that our sockets do not go through: the same check here (the chain verified
 * against the bundle, as `authorized` means on a tls.Server's sockets).
 */
function clientVerified(tls: TLSSocket): boolean {
  const handle = (tls as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  if (tls.destroyed || typeof handle?.verifyError !== "function") return false;
  if (handle.verifyError() !== null) return false;
  tls.authorized = true;
  // …and marks the socket connected, or HTTP/2 would wait for a secureConnect that a server never emits.
  (tls as unknown as { secureConnecting: boolean }).secureConnecting = false;
  return true;
}

type Injector = ReturnType<grpc.Server["createConnectionInjector"]>;

export class FdUnixListener {
  private readonly net: NetServer;
  private readonly injectors = new Set<Injector>();
  private context: SecureContext | undefined;
  private readonly secure: boolean;
  // New SVIDs and bundles apply to new handshakes; established connections carry on.
  private readonly watcher = (opts: SecureContextOptions | null): void => {
    this.context = opts ? createSecureContext(opts) : undefined;
  };
  // A server TLSSocket needs a tls.Server for its session events; this one never listens.
  private readonly tlsServer = createTlsServer();

  /**
   * `credentials` as the grpc-js server would have used them: their TLS options (requested client
   * certificate, rotating SVID and bundle) and their interceptors (peer authorization) apply here too.
   */
  constructor(
    private readonly server: grpc.Server,
    private readonly credentials: grpc.ServerCredentials,
  ) {
    this.secure = credentials._isSecure();
    if (this.secure) {
      credentials._addWatcher(this.watcher);
      // Watchers hear of changes only: when another listener (a tcp:// one bound first) already started the
      // credentials, their current options would never reach this one.
      const current = credentials._getSecureContextOptions();
      if (current) this.watcher(current);
    }
    this.net = createServer({ pauseOnConnect: true }, (sock) => {
      try {
        this.accept(adoptUnixSocket(sock));
      } catch {
        sock.destroy();
      }
    });
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.net.once("error", reject);
      this.net.listen(path, () => {
        this.net.off("error", reject);
        resolve();
      });
    });
  }

  /** An injector for one connection: grpc-js serves it with our interceptors and the connection's tag. */
  private injectorFor(key: string, fds: FdSocket): Injector {
    const creds = grpc.experimental.createServerCredentialsWithInterceptors(
      grpc.ServerCredentials.createInsecure(),
      [tagCalls(key), ...this.credentials._getInterceptors()],
    );
    const injector = this.server.createConnectionInjector(creds);
    this.injectors.add(injector);
    fds.once("close", () => {
      byKey.delete(key);
      this.injectors.delete(injector);
      injector.destroy();
    });
    return injector;
  }

  private accept(fds: FdSocket): void {
    const key = randomUUID();
    byKey.set(key, fds);
    fds.on("error", () => fds.destroy());
    const injector = this.injectorFor(key, fds);
    if (!this.secure) {
      injector.injectConnection(fds);
      return;
    }
    if (!this.context) {
      fds.destroy(); // no SVID yet: as grpc-js does, refuse rather than serve without one
      return;
    }
    const tls = new TLSSocket(fds, {
      isServer: true,
      server: this.tlsServer,
      secureContext: this.context,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ["h2"],
    });
    const timer = setTimeout(() => tls.destroy(), handshakeTimeoutMs);
    tls.on("error", () => tls.destroy());
    tls.once("close", () => {
      clearTimeout(timer);
      fds.destroy();
    });
    tls.once("secure", () => {
      clearTimeout(timer);
      if (!clientVerified(tls)) return void tls.destroy();
      injector.injectConnection(tls);
    });
  }

  close(): Promise<void> {
    if (this.secure) this.credentials._removeWatcher(this.watcher);
    for (const i of this.injectors) i.destroy();
    this.injectors.clear();
    this.tlsServer.close();
    return new Promise((resolve) => this.net.close(() => resolve()));
  }
}
