// VXLAN (spec §1.9): the client-side forwarder offers its tunnel endpoint (src_ip/src_port); the server-side
// forwarder completes dst_ip/dst_port and a VNI. The parity rule (even when src ≤ dst bytewise, else odd)
// keeps two forwarders that allocate for each other from picking the same VNI.
import { randomInt } from "node:crypto";
import { isIPv4 } from "node:net";
import { status } from "@grpc/grpc-js";
import type { Mechanism } from "../../api/connection.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { StatusError, invalidArgument } from "../../core/errors.js";
import { cls, mechanism, types, vxlanDefaultPort, vxlanParams as P } from "./common.js";

const vniKey = Symbol("vxlan.vni");
const maxVni = 0xffffff;

export function vxlanOffer(tunnelIp: string, port = vxlanDefaultPort): Mechanism {
  return mechanism(cls.REMOTE, types.VXLAN, { [P.srcIp]: tunnelIp, [P.srcPort]: String(port) });
}

function ipBytes(ip: string): number[] {
  return isIPv4(ip) ? ip.split(".").map(Number) : [...Buffer.from(ip)];
}

function compareBytes(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * VNIs in use on this node. They are unique per node, not only per remote: every VXLAN device of the node
 * shares the underlay's UDP socket, and the kernel tells tunnels apart by VNI.
 */
export class VniAllocator {
  private readonly used = new Set<number>();

  /** A fresh VNI for a tunnel from `srcIp` to `dstIp`; `want` is kept if free (refresh, restart). */
  allocate(srcIp: string, dstIp: string, want?: number): number {
    if (want !== undefined && want >= 1 && want <= maxVni && !this.used.has(want)) {
      this.used.add(want);
      return want;
    }
    const parity = compareBytes(ipBytes(srcIp), ipBytes(dstIp)) <= 0 ? 0 : 1;
    for (let tries = 0; tries < 64; tries++) {
      let vni = randomInt(1, maxVni);
      if (vni % 2 !== parity) vni = vni === maxVni ? vni - 1 : vni + 1;
      if (!this.used.has(vni)) {
        this.used.add(vni);
        return vni;
      }
    }
    throw new StatusError(status.RESOURCE_EXHAUSTED, `no free VXLAN VNI towards ${srcIp}`);
  }

  release(_srcIp: string, vni: number): void {
    this.used.delete(vni);
  }

  has(_srcIp: string, vni: number): boolean {
    return this.used.has(vni);
  }
}

/** Server side of VXLAN on a forwarder: completes the tunnel's far end and the VNI. */
export function vxlanServer(
  tunnelIp: string,
  vnis: VniAllocator,
  port = vxlanDefaultPort,
): NetworkServiceElement {
  return {
    name: "mechanisms/vxlan",
    async request(req, ctx, next) {
      const m = req.connection!.mechanism!;
      const src = m.parameters[P.srcIp];
      if (!src) throw invalidArgument("mechanism.parameters.src_ip", "VXLAN needs the client's tunnel IP");
      const meta = ctx.connMeta();
      let vni = meta.get(vniKey) as number | undefined;
      const isNew = vni === undefined;
      if (vni === undefined) {
        const asked = m.parameters[P.vni] ? Number(m.parameters[P.vni]) : undefined;
        vni = vnis.allocate(src, tunnelIp, asked);
        meta.set(vniKey, vni);
      }
      m.parameters[P.dstIp] = tunnelIp;
      m.parameters[P.dstPort] = String(port);
      m.parameters[P.vni] = String(vni);
      try {
        return await next.request(req, ctx);
      } catch (err) {
        if (isNew) {
          vnis.release(src, vni);
          meta.delete(vniKey);
        }
        throw err;
      }
    },
    async close(conn, ctx, next) {
      try {
        await next.close(conn, ctx);
      } finally {
        const vni = ctx.connMeta().get(vniKey) as number | undefined;
        const src = conn.mechanism?.parameters[P.srcIp];
        if (vni !== undefined && src) vnis.release(src, vni);
      }
    },
  };
}
