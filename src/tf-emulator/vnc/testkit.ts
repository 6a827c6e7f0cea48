// Helpers shared by the emulator's tests: a server with a client, the real client's error assertion, and
// the bodies most tests start from. Tests only; nothing in the emulator imports this.
import assert from "node:assert/strict";
import { VncClient, VncError, type VncObject } from "../../forwarder/tf/vnc.js";
import { startVncServer, type RunningVncServer, type VncServerOptions } from "./server.js";

export const ipam = ["default-domain", "default-project", "default-network-ipam"];
export const project = ["default-domain", "k8s-default"];

export interface Ref {
  to: string[];
  uuid: string;
  href: string;
  attr: Record<string, unknown> | null;
}
export const refs = (o: VncObject, key: string): Ref[] => (Array.isArray(o[key]) ? (o[key] as Ref[]) : []);

/** Awaits `p`, which must fail with this status and exactly this body (or a body matching the RegExp). */
export async function rejectsWith(
  p: Promise<unknown>,
  status: number,
  text: RegExp | string,
): Promise<VncError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VncError, `expected a VncError, got ${String(err)}`);
    assert.equal(err.status, status, err.message);
    if (typeof text === "string") assert.equal(err.body, text);
    else assert.match(err.body, text);
    return err;
  }
  assert.fail(`expected ${status} ${String(text)}, but the call succeeded`);
}

export async function withServer(
  opts: VncServerOptions = {},
): Promise<{ s: RunningVncServer; c: VncClient; done: () => Promise<void> }> {
  const s = await startVncServer({ port: 0, ...opts });
  const c = new VncClient({ url: s.url, retries: 0 });
  return {
    s,
    c,
    done: async () => {
      c.close();
      await s.stop();
    },
  };
}

/** A VN in k8s-default with these subnets on the default IPAM. */
export function vnBody(
  name: string,
  ...subnets: Record<string, unknown>[]
): Record<string, unknown> & { fq_name: string[] } {
  return {
    fq_name: [...project, name],
    parent_type: "project",
    network_ipam_refs: [{ to: ipam, attr: { ipam_subnets: subnets } }],
  };
}

/** The ipam subnets of a read VN, in order. */
export const subnetsOf = (vn: VncObject): Record<string, unknown>[] =>
  refs(vn, "network_ipam_refs").flatMap((r) => (r.attr?.ipam_subnets as Record<string, unknown>[]) ?? []);

/** POSTs/PUTs/GETs raw JSON, as the official Python client does, and returns status and body text. */
export async function raw(
  url: string,
  method: string,
  body?: unknown,
): Promise<{ status: number; text: string; json: () => unknown }> {
  const res = await fetch(url, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) as unknown };
}
