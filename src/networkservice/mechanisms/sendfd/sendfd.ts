// `sendfd` (upstream sdk mechanisms/sendfd): a mechanism's `inodeURL` given as a file:// path becomes
// inode://<dev>/<ino>, and on a unix socket the file itself travels with the call as a descriptor, so the
// next hop can use a namespace it could not open by path (another mount namespace, another container).
// Client side: on the Request and Close this hop sends; server side: on the response it returns. Only
// file:// URLs this process vouched for are sent (trustNetnsUrl): a caller cannot make us open a path.
import type { Mechanism } from "../../../api/connection.js";
import type { NetworkServiceElement } from "../../../core/chain.js";
import type { CallContext } from "../../../core/context.js";
import { invalidArgument } from "../../../core/errors.js";
import { closeFd, openToSend } from "../../../core/fdpass/files.js";
import type { FdTransceiver } from "../../../core/fdpass/socket.js";
import { nextHopUrl } from "../../connect/connect.js";
import { kernelParams as P } from "../common.js";
import { isTrustedNetnsUrl } from "../kernel.js";
import { isReceivedFileUrl } from "../recvfd/recvfd.js";

/**
 * Whether this process put `url` there itself. By default: vouched for during this call, or a descriptor
 * this very connection received (never another connection's: a caller must not reach someone else's).
 */
export type Trusted = (ctx: CallContext, url: string) => boolean;

const ours: Trusted = (ctx, url) => isTrustedNetnsUrl(ctx, url) || isReceivedFileUrl(ctx, url);

/**
 * Swaps a trusted file:// inodeURL for its inode URL, sending the file on `fds` when there is one (TCP has
 * none: the URL alone goes, and the next hop resolves it on its own node). Records inode → file URL in `swapped`.
 */
function sendAndSwap(
  m: Mechanism | undefined,
  fds: FdTransceiver | undefined,
  ctx: CallContext,
  swapped: Map<string, string>,
  trusted: Trusted = ours,
): void {
  const url = m?.parameters[P.inodeURL];
  if (!m || !url?.startsWith("file://")) return;
  if (!trusted(ctx, url))
    throw invalidArgument(
      "mechanism.parameters.inodeURL",
      `"${url}" is refused: name the network namespace as inode://<dev>/<ino> (file:// URLs are not accepted from callers)`,
    );
  let opened: { fd: number; inodeUrl: string };
  try {
    opened = openToSend(decodeURIComponent(url.slice("file://".length)));
  } catch (err) {
    throw invalidArgument(
      "mechanism.parameters.inodeURL",
      `network namespace ${url}: ${(err as Error).message}`,
    );
  }
  try {
    fds?.sendFd(opened.fd);
  } finally {
    closeFd(opened.fd);
  }
  m.parameters[P.inodeURL] = opened.inodeUrl;
  swapped.set(opened.inodeUrl, url);
}

/** Puts back the file:// URL a response's mechanism had before we swapped it. */
function swapBack(m: Mechanism | undefined, swapped: Map<string, string>): void {
  const url = m?.parameters[P.inodeURL];
  const original = url === undefined ? undefined : swapped.get(url);
  if (m && original) m.parameters[P.inodeURL] = original;
}

/**
 * Client side: `fdsOf(url)` is descriptor passing on the connection to `url`, if it has any. `trusted` says
 * which file:// URLs are ours to send: a client that offers its own namespace names it here, since refreshes
 * and heals send it again outside the call that vouched for it.
 */
export function sendfdClient(
  fdsOf: (url: string) => FdTransceiver | undefined,
  trusted: Trusted = ours,
): NetworkServiceElement {
  const outgoing = (ctx: CallContext, closing: boolean): FdTransceiver | undefined => {
    const url = nextHopUrl(ctx, closing);
    return url?.startsWith("unix://") ? fdsOf(url) : undefined;
  };
  return {
    name: "mechanisms/sendfd",
    async request(req, ctx, next) {
      const fds = outgoing(ctx, false);
      const swapped = new Map<string, string>();
      for (const m of [...req.mechanismPreferences, req.connection?.mechanism])
        sendAndSwap(m, fds, ctx, swapped, trusted);
      const conn = await next.request(req, ctx);
      swapBack(conn.mechanism, swapped);
      return conn;
    },
    async close(conn, ctx, next) {
      const swapped = new Map<string, string>();
      try {
        sendAndSwap(conn.mechanism, outgoing(ctx, true), ctx, swapped, trusted);
      } catch (err) {
        ctx.log.warn(
          { connId: conn.id, err: (err as Error).message },
          "sendfd: cannot pass the namespace on Close",
        );
      }
      await next.close(conn, ctx);
      swapBack(conn.mechanism, swapped);
    },
  };
}

/** Server side: the response's file:// inodeURL goes back to the caller as a descriptor. */
export function sendfdServer(): NetworkServiceElement {
  return {
    name: "mechanisms/sendfd",
    async request(req, ctx, next) {
      const conn = await next.request(req, ctx);
      sendAndSwap(conn.mechanism, ctx.fds, ctx, new Map());
      return conn;
    },
  };
}
