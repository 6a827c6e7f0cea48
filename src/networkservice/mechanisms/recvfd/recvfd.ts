// `recvfd` (upstream sdk mechanisms/recvfd): for every inode://<dev>/<ino> inodeURL that arrives on a unix
// socket, wait for the descriptor the peer sends with it and use the file instead (file:///proc/<pid>/fd/<n>,
// trusted by this hop's kernel mechanism and data plane), for the rest of the chain. The descriptors live as
// long as the NSM connection: closed on Close, or when the first Request fails. On TCP nothing arrives and
// the URL passes unchanged (the data plane may still resolve it on its own node).
import type { Mechanism } from "../../../api/connection.js";
import type { NetworkServiceElement } from "../../../core/chain.js";
import type { CallContext } from "../../../core/context.js";
import { closeFd, inodeUrlPattern, procFdPath } from "../../../core/fdpass/files.js";
import { recvFdForCall } from "../../../core/fdpass/recv.js";
import type { FdTransceiver } from "../../../core/fdpass/socket.js";
import { nextHopUrl } from "../../connect/connect.js";
import { kernelParams as P } from "../common.js";
import { trustNetnsUrl } from "../kernel.js";

/** The files of one connection (one side of a hop), by the inode URL they came for. */
class Files {
  readonly byInode = new Map<string, { fd: number; url: string }>();

  closeAll(): void {
    for (const f of this.byInode.values()) closeFd(f.fd);
    this.byInode.clear();
  }

  inodeOf(fileUrl: string): string | undefined {
    for (const [inode, f] of this.byInode) if (f.url === fileUrl) return inode;
    return undefined;
  }
}

/** Swaps an inode:// inodeURL for the file that came (or comes, before the deadline) with it. */
async function recvAndSwap(
  m: Mechanism | undefined,
  fds: FdTransceiver,
  files: Files,
  ctx: CallContext,
): Promise<void> {
  const inode = m?.parameters[P.inodeURL];
  if (!m || !inode || !inodeUrlPattern.test(inode)) return;
  let f = files.byInode.get(inode);
  if (!f) {
    const fd = await recvFdForCall(fds, inode, ctx);
    f = { fd, url: `file://${procFdPath(fd)}` };
    files.byInode.set(inode, f);
  }
  trustNetnsUrl(ctx, f.url);
  m.parameters[P.inodeURL] = f.url;
}

/** Back to the inode URL the peer knows; files the response did not choose are closed. */
function swapBack(m: Mechanism | undefined, files: Files): void {
  const url = m?.parameters[P.inodeURL];
  const inode = url === undefined ? undefined : files.inodeOf(url);
  if (!m || !inode) return;
  m.parameters[P.inodeURL] = inode;
  for (const [k, f] of files.byInode)
    if (k !== inode) {
      closeFd(f.fd);
      files.byInode.delete(k);
    }
}

const serverKey = Symbol("recvfd.server");
const clientKey = Symbol("recvfd.client");

function filesOf(ctx: CallContext, key: symbol, client: boolean): Files {
  const meta = ctx.connMeta(client);
  let f = meta.get(key) as Files | undefined;
  if (!f) meta.set(key, (f = new Files()));
  return f;
}

/**
 * Whether `url` is the path of a descriptor this connection received (either side of the hop): a connection's
 * stored mechanism keeps it after the call that swapped it in, and a refresh sends it on again.
 */
export function isReceivedFileUrl(ctx: CallContext, url: string): boolean {
  const mine = (files: Files | undefined): boolean => files?.inodeOf(url) !== undefined;
  return (
    mine(ctx.connection?.server.get(serverKey) as Files | undefined) ||
    mine(ctx.connection?.client.get(clientKey) as Files | undefined)
  );
}

/** Server side: descriptors that come with a Request (the client's namespace). */
export function recvfdServer(): NetworkServiceElement {
  return {
    name: "mechanisms/recvfd",
    async request(req, ctx, next) {
      const fds = ctx.fds;
      if (!fds) return next.request(req, ctx);
      const files = filesOf(ctx, serverKey, false);
      const fresh = files.byInode.size === 0;
      try {
        for (const m of [...req.mechanismPreferences, req.connection?.mechanism])
          await recvAndSwap(m, fds, files, ctx);
        const conn = await next.request(req, ctx);
        swapBack(conn.mechanism, files);
        return conn;
      } catch (err) {
        if (fresh) files.closeAll();
        throw err;
      }
    },
    async close(conn, ctx, next) {
      const files = ctx.connection?.server.get(serverKey) as Files | undefined;
      const inode = conn.mechanism?.parameters[P.inodeURL];
      const f = inode === undefined ? undefined : files?.byInode.get(inode);
      if (conn.mechanism && f) {
        trustNetnsUrl(ctx, f.url);
        conn.mechanism.parameters[P.inodeURL] = f.url;
      }
      try {
        await next.close(conn, ctx);
      } finally {
        if (conn.mechanism && f && inode) conn.mechanism.parameters[P.inodeURL] = inode;
        files?.closeAll();
      }
    },
  };
}

/** Client side: descriptors that come with the next hop's response (e.g. the endpoint's namespace). */
export function recvfdClient(fdsOf: (url: string) => FdTransceiver | undefined): NetworkServiceElement {
  return {
    name: "mechanisms/recvfd",
    async request(req, ctx, next) {
      const conn = await next.request(req, ctx);
      const url = nextHopUrl(ctx);
      const fds = url?.startsWith("unix://") ? fdsOf(url) : undefined;
      if (!fds) return conn;
      try {
        await recvAndSwap(conn.mechanism, fds, filesOf(ctx, clientKey, true), ctx);
      } catch (err) {
        // The next hop holds a connection we cannot use: undo it rather than leave it to its timeout.
        await next.close(conn, ctx).catch(() => undefined);
        throw err;
      }
      return conn;
    },
    async close(conn, ctx, next) {
      const files = ctx.connection?.client.get(clientKey) as Files | undefined;
      try {
        await next.close(conn, ctx);
      } finally {
        files?.closeAll();
      }
    },
  };
}
