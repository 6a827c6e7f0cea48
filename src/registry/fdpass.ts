// Registry `recvfd` / `sendfd` (upstream sdk pkg/registry/common/recvfd, sendfd) for the nsmgr: an endpoint
// registering over the node-local unix socket may send its own socket as a descriptor, its URL then being
// inode://<dev>/<ino>; the nsmgr dials it through unix:///proc/<pid>/fd/<n> (the endpoint may live in another
// mount namespace, where its path means nothing to us). The descriptor is held while the registration lives
// and closed on Unregister or expiry. Finds answered on a unix socket pass such endpoints back the same way.
import {
  NetworkServiceEndpointResponse,
  type NetworkServiceEndpoint,
  type NetworkServiceEndpointQuery,
} from "../api/registry.js";
import { closeFd, inodeUrlPattern, openToSend, procFdPath } from "../core/fdpass/files.js";
import { recvFdForCall } from "../core/fdpass/recv.js";
import type { FdTransceiver } from "../core/fdpass/socket.js";
import { asMessage, type RegistryServer } from "../core/registrychain.js";

type NSEServer = RegistryServer<
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse
>;

interface Held {
  inodeUrl: string;
  fd: number;
  url: string;
}

export function recvfdNSE(): NSEServer {
  const byName = new Map<string, Held>();
  const release = (name: string): void => {
    const h = byName.get(name);
    if (!h) return;
    closeFd(h.fd);
    byName.delete(name);
  };
  return {
    name: "recvfd",
    async register(nse, ctx, next) {
      if (!ctx.fds || !inodeUrlPattern.test(nse.url)) return next.register(nse, ctx);
      const old = byName.get(nse.name);
      let held = old?.inodeUrl === nse.url ? old : undefined;
      if (!held) {
        const fd = await recvFdForCall(ctx.fds, nse.url, ctx, "url");
        held = { inodeUrl: nse.url, fd, url: `unix://${procFdPath(fd)}` };
      }
      let res: NetworkServiceEndpoint;
      try {
        res = await next.register({ ...nse, url: held.url }, ctx);
      } catch (err) {
        if (held !== old) closeFd(held.fd);
        throw err;
      }
      if (held !== old) {
        if (old) closeFd(old.fd);
        byName.set(nse.name, held);
      }
      return res.url === held.url ? { ...res, url: held.inodeUrl } : res;
    },
    async unregister(nse, ctx, next) {
      const held = byName.get(nse.name);
      try {
        await next.unregister(held && nse.url === held.inodeUrl ? { ...nse, url: held.url } : nse, ctx);
      } finally {
        release(nse.name);
      }
    },
  };
}

const ownFdPrefix = (): string => `unix://${procFdPath(0).slice(0, -1)}`;

export function sendfdNSE(): NSEServer {
  return {
    name: "sendfd",
    find(query, ctx, stream, next) {
      const prefix = ownFdPrefix();
      return next.find(query, ctx, {
        send: (r) => {
          const m = asMessage(r, NetworkServiceEndpointResponse);
          const url = m.networkServiceEndpoint?.url ?? "";
          if (!url.startsWith(prefix)) return stream.send(r);
          // Our /proc path means nothing to the caller: its inode URL does, with the descriptor on unix.
          const f = openToSend(url.slice("unix://".length));
          try {
            ctx.fds?.sendFd(f.fd);
          } finally {
            closeFd(f.fd);
          }
          stream.send({ ...m, networkServiceEndpoint: { ...m.networkServiceEndpoint!, url: f.inodeUrl } });
        },
      });
    },
  };
}

// Client side of a Find (upstream registry recvfd client): endpoints that come back as inode:// URLs, with
// their socket passed on the registry connection, are dialled through the descriptor we received.
const maxHeld = 256;

export class ReceivedEndpointUrls {
  // inode URL → our copy of the descriptor; oldest first, so the least recently used goes past `maxHeld`.
  private readonly held = new Map<string, Held>();

  constructor(private readonly fds: () => FdTransceiver | undefined) {}

  /** `nses` with inode:// URLs made dialable here (those whose descriptor never came are left out). */
  async resolve(nses: NetworkServiceEndpoint[]): Promise<NetworkServiceEndpoint[]> {
    if (!nses.some((n) => inodeUrlPattern.test(n.url))) return nses;
    const out = await Promise.all(nses.map((n) => this.one(n)));
    return out.filter((n): n is NetworkServiceEndpoint => n !== undefined);
  }

  private async one(nse: NetworkServiceEndpoint): Promise<NetworkServiceEndpoint | undefined> {
    if (!inodeUrlPattern.test(nse.url)) return nse;
    let h = this.held.get(nse.url);
    if (h) {
      this.held.delete(nse.url); // re-inserted below: most recently used
    } else {
      const fds = this.fds();
      if (!fds) return undefined;
      try {
        const fd = await fds.recvFd(nse.url, AbortSignal.timeout(2000));
        h = { inodeUrl: nse.url, fd, url: `unix://${procFdPath(fd)}` };
      } catch {
        return undefined;
      }
    }
    this.held.set(nse.url, h);
    for (const [k, old] of this.held) {
      if (this.held.size <= maxHeld) break;
      closeFd(old.fd);
      this.held.delete(k);
    }
    return { ...nse, url: h.url };
  }

  close(): void {
    for (const h of this.held.values()) closeFd(h.fd);
    this.held.clear();
  }
}
