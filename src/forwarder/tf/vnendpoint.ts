// `tfvn` (the TF virtual-network endpoint's element): plays kube-manager's role for each connection — makes
// the connection's TF objects (vnports.ts) and returns TF's address, gateway, routes and MAC in the connection
// context, with the object ids in extra_context for the TF forwarder, which plays the CNI's role. TF owns the
// addresses here (spec §5 option a): the endpoint is the connection's IPAM, as in any NSM endpoint.
import { ConnectionContext, EthernetContext, IPContext } from "../../api/connectioncontext.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import type { Logger } from "../../core/log.js";
import { invalidArgument } from "../../core/errors.js";
import { tfGatewayMac, tfKeys } from "./keys.js";
import type { TfPort, VnPorts } from "./vnports.js";

const portKey = Symbol("tfvn.port");

export interface TfVnOptions {
  ports: VnPorts;
  /** The VN fq-name backing a network service (undefined: the service is not served here). */
  vnOf(service: string): string[] | undefined;
  /** The floating-ip-pool fq-name to give this service's clients a floating IP from, if any. */
  fipPoolOf?(service: string): string[] | undefined;
  /** Retry a failed removal (TF unreachable) this often until it succeeds; default 2000 ms. */
  retryMs?: number;
}

interface Removal {
  running: Promise<void>;
  timer?: NodeJS.Timeout;
  cancelled: boolean;
}

export interface TfVnElement extends NetworkServiceElement {
  /** Connections whose TF objects still wait for a removal retry. */
  pendingRemovals(): number;
  /** Whether this endpoint holds the connection (for orphan collection after a restart). */
  holds(connId: string): boolean;
}

export function tfVnServer(opts: TfVnOptions): TfVnElement {
  const removals = new Map<string, Removal>();
  const live = new Set<string>();
  const retryMs = opts.retryMs ?? 2000;

  /** Removes the connection's TF objects; on failure retries in the background until it works. */
  const remove = (connId: string, log: Logger, port?: TfPort): Promise<void> => {
    const r: Removal = { running: Promise.resolve(), cancelled: false };
    const attempt = async (): Promise<void> => {
      try {
        await opts.ports.remove(connId, port);
        if (removals.get(connId) === r) removals.delete(connId);
      } catch (err) {
        if (r.cancelled) return;
        // Removal must happen eventually or TF leaks a VM, VMI and address.
        log.warn({ connId, err: (err as Error).message }, "removing TF objects failed; retrying");
        r.timer = setTimeout(() => {
          r.running = attempt();
        }, retryMs);
        r.timer.unref();
      }
    };
    removals.set(connId, r);
    r.running = attempt();
    return r.running;
  };

  /** A new Request for an id whose removal is pending waits for it instead of racing it. */
  const settle = async (connId: string): Promise<void> => {
    const r = removals.get(connId);
    if (!r) return;
    r.cancelled = true;
    clearTimeout(r.timer);
    await r.running.catch(() => undefined);
    removals.delete(connId);
  };

  return {
    name: "tfvn",
    pendingRemovals: () => removals.size,
    holds: (connId) => live.has(connId),
    async request(req, ctx, next) {
      const conn = req.connection!;
      const vn = opts.vnOf(conn.networkService);
      if (!vn) {
        throw invalidArgument(
          "connection.network_service",
          `"${conn.networkService}" is not mapped to a TF virtual network here`,
        );
      }
      const meta = ctx.connMeta();
      let port = meta.get(portKey) as TfPort | undefined;
      const fresh = !port;
      if (!port) {
        await settle(conn.id);
        const ifname = conn.context?.extraContext[tfKeys.vmIfname];
        port = await opts.ports.create(conn.id, vn, ifname, opts.fipPoolOf?.(conn.networkService));
        meta.set(portKey, port);
        live.add(conn.id);
        ctx.log.info(
          { connId: conn.id, vn: port.vnName, ips: port.addrs.map((a) => a.ip), vm: port.vmUuid },
          "TF port created",
        );
      }
      conn.context = withPort(conn.context, port);
      try {
        return await next.request(req, ctx);
      } catch (err) {
        if (fresh) {
          meta.delete(portKey);
          live.delete(conn.id);
          await remove(conn.id, ctx.log, port);
        }
        throw err;
      }
    },
    async close(conn, ctx, next) {
      const port = ctx.connMeta().get(portKey) as TfPort | undefined;
      ctx.connMeta().delete(portKey);
      live.delete(conn.id);
      await remove(conn.id, ctx.log, port);
      await next.close(conn, ctx);
    },
  };
}

function withPort(context: ConnectionContext | undefined, p: TfPort): ConnectionContext {
  const c = ConnectionContext.fromPartial(context ?? {});
  // One address per family, each family's routes through its own gateway (NSM's dual-stack IP context).
  c.ipContext = IPContext.fromPartial({
    ...(c.ipContext ?? {}),
    srcIpAddrs: p.addrs.map((a) => `${a.ip}/${a.plen}`),
    srcRoutes: p.addrs.flatMap((a) => a.routes.map((prefix) => ({ prefix, nextHop: a.gateway }))),
  });
  c.ethernetContext = EthernetContext.fromPartial({ srcMac: p.mac, dstMac: tfGatewayMac });
  const v4 = p.addrs.find((a) => a.family === "v4");
  const v6 = p.addrs.find((a) => a.family === "v6");
  c.extraContext = {
    ...c.extraContext,
    [tfKeys.vmUuid]: p.vmUuid,
    [tfKeys.vmName]: p.vmName,
    [tfKeys.vmiUuid]: p.vmiUuid,
    [tfKeys.vnUuid]: p.vnUuid,
    [tfKeys.vnName]: p.vnName,
    ...(v4 ? { [tfKeys.iipUuid]: v4.iipUuid, [tfKeys.gateway]: v4.gateway, [tfKeys.dns]: v4.dns } : {}),
    ...(v6 ? { [tfKeys.iip6Uuid]: v6.iipUuid, [tfKeys.gateway6]: v6.gateway, [tfKeys.dns6]: v6.dns } : {}),
    [tfKeys.vrouter]: p.vrUuid,
    ...(p.floatingIp ? { [tfKeys.floatingIp]: p.floatingIp, [tfKeys.fipUuid]: p.fipUuid ?? "" } : {}),
  };
  return c;
}
