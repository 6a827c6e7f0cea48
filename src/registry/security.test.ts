// Registry `updatetoken` as upstream's registry updatepath sets path_ids: [caller, …, this hop] from the tokens
// of the registration path, "" for a caller without a token; the token it signs for its own segment is what
// `expire` later caps the registration by.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, it } from "node:test";
import { Metadata } from "@grpc/grpc-js";
import type { NetworkServiceEndpoint } from "../api/registry.js";
import { CallContext } from "../core/context.js";
import { rootLogger } from "../core/log.js";
import { timestampToMs } from "../core/time.js";
import { TrustDomainCa } from "../security/ca.js";
import { generatedIdentity, type Identity } from "../security/identity.js";
import { decodeToken, generateToken, tokenMetadata } from "../security/token.js";
import { endpoint } from "./client.js";
import { expire } from "./elements.js";
import { ownTokenExpiry, updateTokenRegistry } from "./security.js";
import { nseRegistryChain, type NSEServer } from "./types.js";
import { formatPath, parsePath, updatePathServer } from "./updatepath.js";

const registryId = generatedIdentity("registry");
const callerId = generatedIdentity("nse-1");
const nsmgrId = generatedIdentity("nsmgr-1");

interface Seen {
  nse: NetworkServiceEndpoint;
  own: Date | undefined;
}

/** updatepath → updatetoken → expire → a tail that records what it was given. */
function registry(
  self: Identity,
  opts: { insecure?: boolean; lifetimeMs?: number; periodMs?: number; bundle?: string } = {},
) {
  const seen: Seen[] = [];
  const tail: NSEServer = {
    name: "tail",
    register: (nse, ctx) => (seen.push({ nse, own: ownTokenExpiry(ctx) }), Promise.resolve(nse)),
    unregister: (nse, ctx) => (seen.push({ nse, own: ownTokenExpiry(ctx) }), Promise.resolve()),
  };
  const chain = nseRegistryChain([
    updatePathServer("registry"),
    updateTokenRegistry(
      (aud) => generateToken(self, aud, opts.lifetimeMs ?? 600_000),
      opts.insecure ?? true,
      () => opts.bundle,
    ),
    expire(opts.periodMs ?? 60_000),
    tail,
  ]);
  return { chain, seen };
}

async function tokenMd(who: Identity, aud: string[] = [registryId.spiffeId], lifetimeMs = 600_000) {
  const t = await generateToken(who, aud, lifetimeMs);
  return tokenMetadata(t.token, t.expires);
}

function ctxWith(md: Metadata): CallContext {
  return new CallContext(rootLogger, new AbortController().signal, md);
}

const subs = (path: string): string[] =>
  parsePath(path).segments.map((s) => (s.token ? (decodeToken(s.token).sub ?? "") : ""));

const nse = (p: Partial<NetworkServiceEndpoint> = {}) =>
  endpoint({ name: "nse-1", networkServiceNames: ["svc"], url: "tcp://198.18.0.1:5001", ...p });

describe("registry updatetoken: path_ids", () => {
  it("a direct call without path metadata: [caller, registry], and no path header", async () => {
    const { chain, seen } = registry(registryId);
    const ctx = ctxWith(await tokenMd(callerId));
    const out = await chain.register(nse(), ctx);
    assert.deepEqual(out.pathIds, [callerId.spiffeId, registryId.spiffeId]);
    assert.deepEqual(seen[0]!.nse.pathIds, out.pathIds);
    assert.deepEqual(ctx.responseHeaders.get("path"), []);
  });

  it("Go's first call (an empty path): [caller, registry]; the path comes back at the caller's index", async () => {
    const { chain } = registry(registryId);
    const md = await tokenMd(callerId);
    md.set("path", JSON.stringify({ Index: 0, PathSegments: null }));
    const ctx = ctxWith(md);
    const out = await chain.register(nse(), ctx);
    assert.deepEqual(out.pathIds, [callerId.spiffeId, registryId.spiffeId]);
    const header = ctx.responseHeaders.get("path")[0] as string;
    assert.equal(parsePath(header).index, 0);
    assert.deepEqual(subs(header), [callerId.spiffeId, registryId.spiffeId]);

    // The refresh sends that path back, tokens only (Go keeps nothing else): same ids, still two segments.
    const again = await tokenMd(callerId);
    again.set(
      "path",
      JSON.stringify({ Index: 0, PathSegments: parsePath(header).segments.map((s) => ({ token: s.token })) }),
    );
    const ctx2 = ctxWith(again);
    const refreshed = await chain.register(out, ctx2);
    assert.deepEqual(refreshed.pathIds, [callerId.spiffeId, registryId.spiffeId]);
    assert.deepEqual(subs(ctx2.responseHeaders.get("path")[0] as string), refreshed.pathIds);
  });

  it("path_ids the caller sends are replaced, not trusted", async () => {
    const { chain } = registry(registryId);
    const out = await chain.register(
      nse({
        pathIds: ["spiffe://nsm-ts.local/victim", "spiffe://nsm-ts.local/x", "spiffe://nsm-ts.local/y"],
      }),
      ctxWith(await tokenMd(callerId)),
    );
    assert.deepEqual(out.pathIds, [callerId.spiffeId, registryId.spiffeId]);
  });

  it("through an nsmgr: [nse, nsmgr, registry]", async () => {
    const { chain } = registry(registryId);
    const nseTok = await generateToken(callerId, [nsmgrId.spiffeId]);
    const nsmgrTok = await generateToken(nsmgrId, []);
    const md = await tokenMd(nsmgrId);
    md.set(
      "path",
      formatPath({
        index: 1,
        segments: [
          { name: "nse-1", id: "a", token: nseTok.token },
          { name: "nsmgr-1", id: "b", token: nsmgrTok.token },
        ],
      }),
    );
    const ctx = ctxWith(md);
    const out = await chain.register(nse(), ctx);
    assert.deepEqual(out.pathIds, [callerId.spiffeId, nsmgrId.spiffeId, registryId.spiffeId]);
    const header = ctx.responseHeaders.get("path")[0] as string;
    assert.equal(parsePath(header).index, 1, "index back at the nsmgr's segment");
    assert.deepEqual(subs(header), out.pathIds);
  });

  it('insecure, a caller without a token: ["", registry], our segment still signed', async () => {
    const { chain } = registry(registryId);
    const md = new Metadata();
    md.set("path", JSON.stringify({ Index: 0, PathSegments: [] }));
    const ctx = ctxWith(md);
    const out = await chain.register(nse(), ctx);
    assert.deepEqual(out.pathIds, ["", registryId.spiffeId]);
    assert.deepEqual(subs(ctx.responseHeaders.get("path")[0] as string), ["", registryId.spiffeId]);
  });

  it("Unregister stamps path_ids the same way", async () => {
    const { chain, seen } = registry(registryId);
    await chain.unregister(
      nse({ pathIds: ["spiffe://nsm-ts.local/victim"] }),
      ctxWith(await tokenMd(callerId)),
    );
    assert.deepEqual(seen[0]!.nse.pathIds, [callerId.spiffeId, registryId.spiffeId]);
  });

  it("in-process calls are left alone", async () => {
    const { chain, seen } = registry(registryId);
    const ctx = ctxWith(new Metadata());
    ctx.internal = true;
    await chain.register(nse({ pathIds: ["kept"] }), ctx);
    assert.deepEqual(seen[0]!.nse.pathIds, ["kept"]);
    assert.equal(seen[0]!.own, undefined);
  });
});

describe("registry updatetoken: own token expiry", () => {
  let ca: TrustDomainCa;
  before(async () => {
    ca = await TrustDomainCa.create("registry.test");
  });

  it("is the expiry of the token in our segment", async () => {
    const { chain, seen } = registry(registryId, { lifetimeMs: 20_000 });
    const md = await tokenMd(callerId);
    md.set("path", "{}");
    const ctx = ctxWith(md);
    await chain.register(nse(), ctx);
    const ours = parsePath(ctx.responseHeaders.get("path")[0] as string).segments[1]!;
    assert.equal(seen[0]!.own!.getTime(), (decodeToken(ours.token).exp ?? 0) * 1000);
  });

  it("under mTLS, is no later than the caller's certificate (as upstream signs for a TLS peer)", async () => {
    const self = await ca.issue("spiffe://registry.test/registry", 3_600_000);
    const caller = await ca.issue("spiffe://registry.test/nse-1", 30_000);
    const { chain, seen } = registry(self, { insecure: false, bundle: ca.bundlePem });
    // The caller's token is made to outlive its certificate, so only our cap can bring the time down.
    const t = await generateToken({ ...caller, notAfter: undefined }, [self.spiffeId], 600_000);
    const ctx = ctxWith(tokenMetadata(t.token, t.expires));
    const cert = new X509Certificate(caller.certificatePem!);
    ctx.peerCertificate = cert.raw;
    const notAfter = new Date(cert.validTo).getTime();
    const out = await chain.register(nse(), ctx);
    assert.equal(seen[0]!.own!.getTime(), notAfter);
    assert.equal(timestampToMs(out.expirationTime!), notAfter);
    assert.deepEqual(out.pathIds, [caller.spiffeId, self.spiffeId]);
  });
});
