// `nsmonitor` (forwarder; upstream sdk-kernel's netns monitor): a connection whose client network namespace
// is gone (its pod was deleted) is closed at once, here and downstream, instead of living until its token
// expires. A namespace held open only by this forwarder's own handles no longer appears under /proc/*/ns/net
// or /var/run/netns (descriptors passed to us keep it alive, but name no process's): that is "gone". One scan
// for all connections every `intervalMs`.
import type { NetworkServiceElement } from "../../core/chain.js";
import type { Logger } from "../../core/log.js";
import { inodeUrlOf } from "../../core/netns.js";
import { listNamespaces } from "../../dataplane/index.js";
import { eventFactory, type EventFactory } from "../begin/begin.js";
import { kernelParams as K, types } from "../mechanisms/common.js";

interface Watched {
  inode: string;
  factory: EventFactory;
}

export interface NsMonitor extends NetworkServiceElement {
  stop(): void;
}

/** The inode URL a mechanism's namespace reference names (a received descriptor's file:// path included). */
function inodeOf(url: string | undefined): string | undefined {
  if (url?.startsWith("inode://")) return url;
  if (!url?.startsWith("file://")) return undefined;
  try {
    return inodeUrlOf(url.slice("file://".length));
  } catch {
    return undefined;
  }
}

export function nsMonitorServer(log: Logger, intervalMs = 500): NsMonitor {
  const watched = new Map<string, Watched>();
  let timer: NodeJS.Timeout | undefined;

  const scan = (): void => {
    if (watched.size === 0) return;
    const present = new Set(listNamespaces().map((n) => n.inodeUrl));
    for (const [id, w] of watched) {
      if (present.has(w.inode)) continue;
      watched.delete(id);
      log.info(
        { connId: id, netns: w.inode },
        "the client's network namespace is gone: closing the connection",
      );
      w.factory
        .close()
        .catch((err: unknown) => log.warn({ connId: id, err }, "closing after the namespace went failed"));
    }
  };

  return {
    name: "nsmonitor",
    stop: () => clearInterval(timer),
    async request(req, ctx, next) {
      const mech = req.connection?.mechanism;
      const id = req.connection!.id;
      const out = await next.request(req, ctx);
      const inode = mech?.type === types.KERNEL ? inodeOf(mech.parameters[K.inodeURL]) : undefined;
      const factory = eventFactory(ctx);
      if (inode && factory) {
        watched.set(id, { inode, factory });
        if (!timer) {
          timer = setInterval(scan, intervalMs);
          timer.unref();
        }
      }
      return out;
    },
    async close(conn, ctx, next) {
      watched.delete(conn.id);
      await next.close(conn, ctx);
    },
  };
}
