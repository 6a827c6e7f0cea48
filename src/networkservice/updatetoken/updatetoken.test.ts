// updatetoken (server side): the caller's segment gets the token it presented (and the expiry its metadata
// claims), this hop's segment a fresh token addressed to the caller (its certificate's SPIFFE ID under mTLS, its
// token's sub on an insecure link), on Request and Close alike.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import type { Connection, Path } from "../../api/connection.js";
import { chain, element, type NetworkServiceNext } from "../../core/chain.js";
import { CallContext } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { rootLogger } from "../../core/log.js";
import { timestampToMs } from "../../core/time.js";
import { TrustDomainCa } from "../../security/ca.js";
import { generatedIdentity, type Identity } from "../../security/identity.js";
import {
  decodeToken,
  generateToken,
  tokenExpiresKey,
  tokenKey,
  tokenMetadata,
  verifyToken,
} from "../../security/token.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { updateTokenServer, type Signer } from "./updatetoken.js";

let nsc: Identity;
let nsmgr: Identity;

before(async () => {
  const ca = await TrustDomainCa.create("nsm.test");
  nsc = await ca.issue("spiffe://nsm.test/nsc");
  nsmgr = await ca.issue("spiffe://nsm.test/nsmgr");
});

function conn(index = 1, prevToken = ""): Connection {
  const segs = [
    { name: "nsc", id: "c1", token: prevToken, expires: undefined, metrics: {} },
    { name: "nsmgr", id: "c1-nsmgr", token: "", expires: undefined, metrics: {} },
  ];
  return {
    ...emptyConnection(),
    id: index === 0 ? "c1" : "c1-nsmgr",
    networkService: "s",
    path: { index, pathSegments: index === 0 ? segs.slice(0, 1) : segs },
  };
}

interface Recorded {
  chain: NetworkServiceNext;
  /** Paths as the element after updatetoken saw them. */
  seen: (Path | undefined)[];
  audiences: string[][];
}

function withUpdateToken(signer: Identity = nsmgr, sign?: Signer): Recorded {
  const seen: (Path | undefined)[] = [];
  const audiences: string[][] = [];
  const s: Signer =
    sign ??
    ((aud) => {
      audiences.push(aud);
      return generateToken(signer, aud);
    });
  return {
    seen,
    audiences,
    chain: chain([
      updateTokenServer(s),
      element(
        "after",
        (r) => {
          seen.push(structuredClone(r.connection?.path));
          return Promise.resolve(r.connection!);
        },
        (c) => {
          seen.push(structuredClone(c.path));
          return Promise.resolve();
        },
      ),
    ]),
  };
}

function ctxWith(md: Metadata, cert?: Identity): CallContext {
  const ctx = new CallContext(rootLogger, new AbortController().signal, md);
  if (cert) ctx.peerCertificate = new X509Certificate(cert.certificatePem ?? "").raw;
  return ctx;
}

const req = (c: Connection): { connection: Connection; mechanismPreferences: [] } => ({
  connection: c,
  mechanismPreferences: [],
});

describe("updatetoken server", () => {
  it("mTLS: the caller's segment gets the presented token and expiry, ours a token for the caller", async () => {
    const presented = await generateToken(nsc, [nsmgr.spiffeId]);
    // The metadata may claim an earlier expiry than the token's exp: that is what the segment records.
    const claimed = new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000);
    const r = withUpdateToken();
    const out = await r.chain.request(req(conn()), ctxWith(tokenMetadata(presented.token, claimed), nsc));
    const path = r.seen[0];
    assert.ok(path);
    const [prev, own] = path.pathSegments;
    assert.equal(prev?.token, presented.token);
    assert.equal(timestampToMs(prev?.expires ?? { seconds: 0, nanos: 0 }), claimed.getTime());
    const claims = await verifyToken(own?.token ?? "", nsmgr.publicKey);
    assert.equal(claims.sub, nsmgr.spiffeId);
    assert.deepEqual(claims.aud, [nsc.spiffeId], "addressed to the caller's certificate identity");
    assert.equal(timestampToMs(own?.expires ?? { seconds: 0, nanos: 0 }), (claims.exp ?? 0) * 1000);
    assert.deepEqual(r.audiences, [[nsc.spiffeId]]);
    assert.equal(out.path?.pathSegments[1]?.token, own?.token, "the response carries the stamped path");
  });

  it("mTLS: the audience is the certificate's identity, whatever the presented token claims", async () => {
    const liar: Identity = { ...nsc, spiffeId: "spiffe://nsm.test/admin" };
    const presented = await generateToken(liar, [nsmgr.spiffeId]);
    const r = withUpdateToken();
    await r.chain.request(req(conn()), ctxWith(tokenMetadata(presented.token, presented.expires), nsc));
    assert.deepEqual(r.audiences, [[nsc.spiffeId]]);
  });

  it("insecure: the audience is the presented token's sub", async () => {
    const a = generatedIdentity("nsc");
    const presented = await generateToken(a, []);
    const r = withUpdateToken(generatedIdentity("nsmgr"));
    await r.chain.request(req(conn()), ctxWith(tokenMetadata(presented.token, presented.expires)));
    assert.deepEqual(r.audiences, [["spiffe://nsm-ts.local/nsc"]]);
    assert.deepEqual(decodeToken(r.seen[0]?.pathSegments[1]?.token ?? "").aud, ["spiffe://nsm-ts.local/nsc"]);
    assert.equal(r.seen[0]?.pathSegments[0]?.token, presented.token);
  });

  it("the -expires metadata may be missing: the token's exp is used", async () => {
    const presented = await generateToken(nsc, [nsmgr.spiffeId]);
    const md = new Metadata();
    md.set(tokenKey, presented.token);
    const r = withUpdateToken();
    await r.chain.request(req(conn()), ctxWith(md, nsc));
    const prev = r.seen[0]?.pathSegments[0];
    assert.equal(timestampToMs(prev?.expires ?? { seconds: 0, nanos: 0 }), presented.expires.getTime());
  });

  it("no token presented: the caller's segment stays as sent; without caller identity ours has no aud", async () => {
    const r = withUpdateToken();
    await r.chain.request(req(conn(1, "sent-in-path")), ctxWith(new Metadata()));
    assert.equal(r.seen[0]?.pathSegments[0]?.token, "sent-in-path");
    assert.equal(r.seen[0]?.pathSegments[0]?.expires, undefined);
    assert.deepEqual(r.audiences, [[]]);
    assert.deepEqual(decodeToken(r.seen[0]?.pathSegments[1]?.token ?? "").aud, []);
  });

  it("the first hop (index 0) has no caller segment: only its own is stamped", async () => {
    const presented = await generateToken(nsc, [nsmgr.spiffeId]);
    const r = withUpdateToken();
    const c = conn(0);
    await r.chain.request(req(c), ctxWith(tokenMetadata(presented.token, presented.expires), nsc));
    const segs = r.seen[0]?.pathSegments ?? [];
    assert.equal(segs.length, 1);
    assert.notEqual(segs[0]?.token, presented.token);
    assert.equal(decodeToken(segs[0]?.token ?? "").sub, nsmgr.spiffeId);
  });

  it("a connection without a path passes untouched", async () => {
    const r = withUpdateToken();
    await r.chain.request(req({ ...conn(), path: undefined }), ctxWith(new Metadata(), nsc));
    assert.deepEqual(r.seen, [undefined]);
    assert.deepEqual(r.audiences, []);
  });

  it("a Close is stamped the same way", async () => {
    const presented = await generateToken(nsc, [nsmgr.spiffeId]);
    const r = withUpdateToken();
    await r.chain.close(conn(), ctxWith(tokenMetadata(presented.token, presented.expires), nsc));
    const segs = r.seen[0]?.pathSegments ?? [];
    assert.equal(segs[0]?.token, presented.token);
    assert.deepEqual((await verifyToken(segs[1]?.token ?? "", nsmgr.publicKey)).aud, [nsc.spiffeId]);
  });

  it("unusable token metadata is INVALID_ARGUMENT; a failing signer fails the call", async () => {
    const md = new Metadata();
    md.set(tokenKey, "garbage");
    md.set(tokenExpiresKey, "soon");
    const r = withUpdateToken();
    await assert.rejects(
      r.chain.request(req(conn()), ctxWith(md, nsc)),
      (e: unknown) => e instanceof StatusError && e.code === status.INVALID_ARGUMENT,
    );
    const failing = withUpdateToken(nsmgr, () => Promise.reject(new Error("no SVID")));
    await assert.rejects(failing.chain.request(req(conn()), ctxWith(new Metadata(), nsc)), /no SVID/);
    assert.deepEqual([...r.seen, ...failing.seen], []);
  });
});
