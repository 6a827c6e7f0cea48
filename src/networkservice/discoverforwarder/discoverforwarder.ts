// `discoverforwarder` (nsmgr, spec §2.3 step 2): picks a forwarder registered through this nsmgr whose
// labels satisfy the service's match metadata (default p2p=true), preferring the one this connection used
// before (unless the client asked to reselect) or, on a fresh nsmgr, the one named in the path; tries the
// candidates in turn until one accepts.
import { status } from "@grpc/grpc-js";
import { State } from "../../api/connection.js";
import { NetworkServiceRequest } from "../../api/networkservice.js";
import type { NetworkService, NetworkServiceEndpoint } from "../../api/registry.js";
import type { NetworkServiceElement } from "../../core/chain.js";
import { StatusError, notFound, toStatusError } from "../../core/errors.js";
import { isSubset } from "../../registry/template.js";
import { setClientUrl } from "../clienturl/clienturl.js";

const chosenKey = Symbol("discoverforwarder.chosen");
export const defaultForwarderLabels = { p2p: "true" };

export interface ForwarderSource {
  findService(name: string): Promise<NetworkService | undefined>;
  /** Live forwarders registered through this nsmgr, with their real (local) URLs. */
  forwarders(): NetworkServiceEndpoint[];
  forwarderServiceName: string;
}

/** Forwarder labels required for a client of `ns` (spec §4.3, last bullets). */
export function requiredForwarderLabels(
  ns: NetworkService,
  clientLabels: Record<string, string>,
): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const m of ns.matches) {
    if (!isSubset(clientLabels, m.sourceSelector, clientLabels)) continue;
    const labels = m.metadata?.labels;
    if (labels && Object.keys(labels).length > 0) out.push(labels);
    if (!m.fallthrough) break;
  }
  return out.length > 0 ? out : [defaultForwarderLabels];
}

export function discoverForwarderServer(source: ForwarderSource): NetworkServiceElement {
  return {
    name: "discoverforwarder",
    async request(req, ctx, next) {
      const conn = req.connection!;
      const ns = await source.findService(conn.networkService);
      if (!ns) throw notFound(`network service "${conn.networkService}" not found`);
      const all = source.forwarders();
      let fwds: NetworkServiceEndpoint[] = [];
      for (const want of requiredForwarderLabels(ns, conn.labels)) {
        fwds = all.filter((f) =>
          isSubset(f.networkServiceLabels[source.forwarderServiceName]?.labels, want, conn.labels),
        );
        if (fwds.length > 0) break;
      }
      if (fwds.length === 0) {
        throw notFound(
          `no forwarder on this node matches network service "${ns.name}" (${all.length} forwarders registered)`,
        );
      }
      const meta = ctx.connMeta();
      const reselect = conn.state === State.RESELECT_REQUESTED;
      const preferred = reselect
        ? undefined
        : ((meta.get(chosenKey) as string | undefined) ?? conn.path?.pathSegments[conn.path.index + 1]?.name);
      fwds.sort((a, b) => Number(b.name === preferred) - Number(a.name === preferred));
      // A refresh of a connection that already runs through a live forwarder stays there: trying another
      // would leave the old one's data path behind. Moving is the client's call (RESELECT_REQUESTED).
      const remembered = reselect ? undefined : (meta.get(chosenKey) as string | undefined);
      if (remembered && fwds[0]?.name === remembered) fwds = [fwds[0]];
      const failures: string[] = [];
      let lastCode = status.UNAVAILABLE;
      for (const fwd of fwds) {
        setClientUrl(ctx, fwd.url);
        try {
          const out = await next.request(NetworkServiceRequest.fromPartial(req), ctx);
          meta.set(chosenKey, fwd.name);
          return out;
        } catch (err) {
          const e = toStatusError(err);
          if (ctx.signal.aborted) throw e;
          failures.push(`${fwd.name}: ${e.details}`);
          lastCode = e.code;
        }
      }
      throw new StatusError(
        lastCode,
        fwds.length === 1 ? failures[0]! : `all ${fwds.length} forwarders failed: ${failures.join("; ")}`,
      );
    },
  };
}
