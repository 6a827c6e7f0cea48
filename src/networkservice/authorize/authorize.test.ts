// authorize (server side): runs the server policies over the left side of the path on every Request and Close
// from outside the process, and pins a connection to the identity that created it. Calls are made with a
// CallContext as the gRPC server builds it: the caller's token in the metadata, the DER of its TLS certificate
// in `peerCertificate`; `updatetoken` runs first, as in a hop's chain.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import type { Connection } from "../../api/connection.js";
import type { NetworkServiceRequest } from "../../api/networkservice.js";
import { chain, element, type NetworkServiceNext } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { rootLogger } from "../../core/log.js";
import { TrustDomainCa } from "../../security/ca.js";
import { generatedIdentity, type Identity } from "../../security/identity.js";
import type { Policy, PolicyInput } from "../../security/policy.js";
import { TestPki } from "../../security/testpki.js";
import { generateToken, tokenMetadata } from "../../security/token.js";
import { beginServer } from "../begin/begin.js";
import { emptyConnection } from "../updatepath/updatepath.js";
import { updateTokenServer } from "../updatetoken/updatetoken.js";
import { authorizeServer, type AuthorizeOptions } from "./authorize.js";

let nscA: Identity;
let nscB: Identity;
let nsmgr: Identity;
let forwarder: Identity;

before(async () => {
  const ca = await TrustDomainCa.create("nsm.test");
  nscA = await ca.issue("spiffe://nsm.test/nsc-a");
  nscB = await ca.issue("spiffe://nsm.test/nsc-b");
  nsmgr = await ca.issue("spiffe://nsm.test/nsmgr");
  forwarder = await ca.issue("spiffe://nsm.test/forwarder");
});

const der = (identity: Identity): Buffer => new X509Certificate(identity.certificatePem ?? "").raw;

interface CallOptions {
  /** The TLS certificate the caller presented; none on an insecure link. */
  cert?: Identity | Buffer;
  /** Who signs the presented token (default: the certificate's identity); null: no token. */
  signer?: Identity | null;
  /** The token's audience (default: the nsmgr). */
  aud?: string[];
  connection?: ConnectionMetadata;
}

/** A CallContext as the server makes it for an outside caller. */
async function callerCtx(opts: CallOptions): Promise<CallContext> {
  const md = new Metadata();
  const certId = opts.cert === undefined || Buffer.isBuffer(opts.cert) ? undefined : opts.cert;
  const signer = opts.signer === undefined ? certId : opts.signer;
  if (signer) {
    const t = await generateToken(signer, opts.aud ?? [nsmgr.spiffeId]);
    tokenMetadata(t.token, t.expires, md);
  }
  const ctx = new CallContext(rootLogger, new AbortController().signal, md);
  if (certId) ctx.peerCertificate = der(certId);
  else if (Buffer.isBuffer(opts.cert)) ctx.peerCertificate = opts.cert;
  if (opts.connection) ctx.connection = opts.connection;
  return ctx;
}

/** The connection as updatepath leaves it at the nsmgr (index 1), the caller's segment still without token. */
function conn(id = "c1", caller = "nsc"): Connection {
  return {
    ...emptyConnection(),
    id: `${id}-nsmgr`,
    networkService: "s",
    path: {
      index: 1,
      pathSegments: [
        { name: caller, id, token: "", expires: undefined, metrics: {} },
        { name: "nsmgr", id: `${id}-nsmgr`, token: "", expires: undefined, metrics: {} },
      ],
    },
  };
}

const req = (c: Connection): NetworkServiceRequest => ({ connection: c, mechanismPreferences: [] });

interface Hop {
  chain: NetworkServiceNext;
  requested: string[];
  closed: string[];
}

/** updatetoken (signing as the nsmgr) → authorize → a tail recording what got through. */
function hop(opts: AuthorizeOptions, signer: Identity = nsmgr): Hop {
  const requested: string[] = [];
  const closed: string[] = [];
  return {
    requested,
    closed,
    chain: chain([
      updateTokenServer((aud) => generateToken(signer, aud)),
      authorizeServer(opts),
      element(
        "tail",
        (r) => {
          requested.push(r.connection?.id ?? "");
          return Promise.resolve(r.connection!);
        },
        (c) => {
          closed.push(c.id);
          return Promise.resolve();
        },
      ),
    ]),
  };
}

function isStatus(code: status, ...parts: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, code, `${status[err.code]}: ${err.message}`);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  };
}

describe("authorize server: policies", () => {
  it("lets a well-formed call through under mTLS, Request and Close", async () => {
    const h = hop({ insecure: false });
    const meta = new ConnectionMetadata();
    await h.chain.request(req(conn()), await callerCtx({ cert: nscA, connection: meta }));
    await h.chain.close(conn(), await callerCtx({ cert: nscA, connection: meta }));
    assert.deepEqual(h.requested, ["c1-nsmgr"]);
    assert.deepEqual(h.closed, ["c1-nsmgr"]);
  });

  it("no TLS certificate in secure mode: UNAUTHENTICATED, although the token is fine", async () => {
    const h = hop({ insecure: false });
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ signer: nscA })),
      isStatus(status.UNAUTHENTICATED, "presented no TLS certificate"),
    );
    await assert.rejects(
      h.chain.close(conn(), await callerCtx({ signer: nscA })),
      isStatus(status.UNAUTHENTICATED),
    );
    assert.deepEqual([...h.requested, ...h.closed], []);
  });

  it("a certificate without a SPIFFE ID: UNAUTHENTICATED", async () => {
    const pki = new TestPki();
    try {
      const plain = pki.leaf(pki.ca("ca"), "plain", { uri: null });
      const cert = new X509Certificate(readFileSync(plain.certFile)).raw;
      const h = hop({ insecure: false });
      await assert.rejects(
        h.chain.request(req(conn()), await callerCtx({ cert, signer: nscA })),
        isStatus(status.UNAUTHENTICATED, "no identity"),
      );
      assert.deepEqual(h.requested, []);
    } finally {
      pki.cleanup();
    }
  });

  it("a connection without a path: PERMISSION_DENIED", async () => {
    const h = hop({ insecure: false });
    await assert.rejects(
      h.chain.request(req({ ...conn(), path: undefined }), await callerCtx({ cert: nscA })),
      isStatus(status.PERMISSION_DENIED, "has no path"),
    );
  });

  it("the caller's token must be signed by the certificate's key and name its identity", async () => {
    const h = hop({ insecure: false });
    // B's token replayed over A's connection.
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ cert: nscA, signer: nscB })),
      isStatus(status.PERMISSION_DENIED, "prev_token_signed", "does not verify"),
    );
    // A's key, but a token that claims to be someone else.
    const liar: Identity = { ...nscA, spiffeId: "spiffe://nsm.test/admin" };
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ cert: nscA, signer: liar })),
      isStatus(
        status.PERMISSION_DENIED,
        "prev_token_signed",
        'not the caller\'s identity "spiffe://nsm.test/nsc-a"',
      ),
    );
    // A token addressed to another hop, or without audience.
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ cert: nscA, aud: [forwarder.spiffeId] })),
      isStatus(status.PERMISSION_DENIED, "tokens_chained"),
    );
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ cert: nscA, aud: [] })),
      isStatus(status.PERMISSION_DENIED, "tokens_chained"),
    );
    // No token at all.
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ cert: nscA, signer: null })),
      isStatus(status.PERMISSION_DENIED, "tokens_valid", "segment 0 (nsc)", "no token"),
    );
    assert.deepEqual(h.requested, []);
  });

  it("a Close checks only the caller's and the own token for expiry; a Request checks all", async () => {
    const h = hop({ insecure: false }, forwarder);
    // nsc → nsmgr → forwarder: the nsc's token expired long ago, the nsmgr (caller) presents a fresh one.
    const old = await generateToken(
      nscA,
      [nsmgr.spiffeId],
      60_000,
      undefined,
      new Date(Date.now() - 3_600_000),
    );
    const c = (): Connection => ({
      ...emptyConnection(),
      id: "c1-fwd",
      networkService: "s",
      path: {
        index: 2,
        pathSegments: [
          { name: "nsc", id: "c1", token: old.token, expires: undefined, metrics: {} },
          { name: "nsmgr", id: "c1-nsmgr", token: "", expires: undefined, metrics: {} },
          { name: "forwarder", id: "c1-fwd", token: "", expires: undefined, metrics: {} },
        ],
      },
    });
    const ctx = (): Promise<CallContext> => callerCtx({ cert: nsmgr, aud: [forwarder.spiffeId] });
    await assert.rejects(
      h.chain.request(req(c()), await ctx()),
      isStatus(status.PERMISSION_DENIED, "tokens_expired", "segment 0 (nsc)"),
    );
    await h.chain.close(c(), await ctx());
    assert.deepEqual(h.closed, ["c1-fwd"]);
  });

  it("custom policies replace the defaults, see the call, and their denial surfaces", async () => {
    const seen: PolicyInput[] = [];
    let deny = false;
    const custom: Policy = {
      name: "custom",
      check: (input) => {
        seen.push(input);
        if (deny) throw new StatusError(status.PERMISSION_DENIED, "no sufficient privileges: custom: nope");
      },
    };
    const h = hop({ insecure: false, policies: [custom] });
    // Without audience the default tokens_chained would refuse: the custom list alone decides.
    await h.chain.request(req(conn()), await callerCtx({ cert: nscA, aud: [] }));
    assert.equal(seen.length, 1);
    const input = seen[0] as PolicyInput;
    assert.equal(input.peerId, nscA.spiffeId);
    assert.ok(input.peerKey?.equals(nscA.publicKey), "the caller's certificate key");
    assert.equal(input.insecure, false);
    assert.equal(input.close, false);
    assert.equal(input.path.index, 1);
    assert.ok(input.path.pathSegments[0]?.token, "updatetoken put the presented token in");
    await h.chain.close(conn(), await callerCtx({ cert: nscA }));
    assert.equal(seen[1]?.close, true);
    deny = true;
    await assert.rejects(
      h.chain.request(req(conn("c2")), await callerCtx({ cert: nscA })),
      isStatus(status.PERMISSION_DENIED, "custom: nope"),
    );
    await assert.rejects(
      h.chain.close(conn("c2"), await callerCtx({ cert: nscA })),
      isStatus(status.PERMISSION_DENIED, "custom"),
    );
    assert.deepEqual(h.requested, ["c1-nsmgr"]);
    assert.deepEqual(h.closed, ["c1-nsmgr"]);
  });

  it("internal calls (timeout, refresh, heal) skip authorization", async () => {
    const h = hop({ insecure: false, policies: [{ name: "never", check: () => assert.fail("ran") }] });
    const ctx = CallContext.background(rootLogger);
    ctx.connection = new ConnectionMetadata();
    // No certificate, no token, no path even: nothing to check for the hop's own events.
    await h.chain.request(req({ ...conn(), path: undefined }), ctx);
    await h.chain.close({ ...conn(), path: undefined }, ctx);
    assert.deepEqual(h.requested, ["c1-nsmgr"]);
    assert.deepEqual(h.closed, ["c1-nsmgr"]);
  });
});

describe("authorize server: pinning", () => {
  it("only the identity that created a connection may refresh or close it", async () => {
    const h = hop({ insecure: false });
    const meta = new ConnectionMetadata(); // what begin keeps for the connection
    await h.chain.request(req(conn("c1", "nsc-a")), await callerCtx({ cert: nscA, connection: meta }));

    // B passes every policy with its own certificate and token, but the connection is A's.
    const denied = isStatus(
      status.PERMISSION_DENIED,
      "c1-nsmgr belongs to spiffe://nsm.test/nsc-a, not to spiffe://nsm.test/nsc-b",
    );
    await assert.rejects(
      h.chain.request(req(conn("c1", "nsc-b")), await callerCtx({ cert: nscB, connection: meta })),
      denied,
    );
    await assert.rejects(
      h.chain.close(conn("c1", "nsc-b"), await callerCtx({ cert: nscB, connection: meta })),
      denied,
    );
    assert.deepEqual(h.requested, ["c1-nsmgr"]);
    assert.deepEqual(h.closed, []);

    // A still may; B may create connections of its own.
    await h.chain.request(req(conn("c1", "nsc-a")), await callerCtx({ cert: nscA, connection: meta }));
    await h.chain.request(
      req(conn("c2", "nsc-b")),
      await callerCtx({ cert: nscB, connection: new ConnectionMetadata() }),
    );
    await h.chain.close(conn("c1", "nsc-a"), await callerCtx({ cert: nscA, connection: meta }));
    assert.deepEqual(h.requested, ["c1-nsmgr", "c1-nsmgr", "c2-nsmgr"]);
    assert.deepEqual(h.closed, ["c1-nsmgr"]);
  });

  it("with begin: a refused refresh or Close by another identity leaves the owner's connection intact", async () => {
    const begin = beginServer(rootLogger);
    const closed: string[] = [];
    const c = chain([
      begin,
      updateTokenServer((aud) => generateToken(nsmgr, aud)),
      authorizeServer({ insecure: false }),
      element(
        "tail",
        (r) => Promise.resolve(r.connection!),
        (x) => {
          closed.push(x.id);
          return Promise.resolve();
        },
      ),
    ]);
    await c.request(req(conn()), await callerCtx({ cert: nscA }));
    await assert.rejects(
      c.request(req(conn()), await callerCtx({ cert: nscB })),
      isStatus(status.PERMISSION_DENIED, "belongs to"),
    );
    await assert.rejects(
      c.close(conn(), await callerCtx({ cert: nscB })),
      isStatus(status.PERMISSION_DENIED, "belongs to"),
    );
    assert.equal(begin.size, 1);
    assert.deepEqual(closed, []);
    await c.close(conn(), await callerCtx({ cert: nscA }));
    assert.equal(begin.size, 0);
    assert.deepEqual(closed, ["c1-nsmgr"]);
  });

  it("insecure mode: no certificate needed, the token's sub is the (unproven) identity that pins", async () => {
    const a = generatedIdentity("nsc-a");
    const b = generatedIdentity("nsc-b");
    const server = generatedIdentity("nsmgr");
    const h = hop({ insecure: true }, server);
    const meta = new ConnectionMetadata();
    // The first call of an insecure link knows no audience: tolerated.
    await h.chain.request(req(conn()), await callerCtx({ signer: a, aud: [], connection: meta }));
    await h.chain.request(
      req(conn()),
      await callerCtx({ signer: a, aud: [server.spiffeId], connection: meta }),
    );
    await assert.rejects(
      h.chain.request(req(conn()), await callerCtx({ signer: b, aud: [server.spiffeId], connection: meta })),
      isStatus(status.PERMISSION_DENIED, "belongs to spiffe://nsm-ts.local/nsc-a"),
    );
    // A wrong audience is still refused.
    await assert.rejects(
      h.chain.request(req(conn("c2")), await callerCtx({ signer: a, aud: [b.spiffeId] })),
      isStatus(status.PERMISSION_DENIED, "tokens_chained"),
    );
    // Neither certificate nor token: nobody to pin to.
    await assert.rejects(
      h.chain.request(req(conn("c3")), await callerCtx({ signer: null })),
      isStatus(status.UNAUTHENTICATED, "no identity"),
    );
    assert.deepEqual(h.requested, ["c1-nsmgr", "c1-nsmgr"]);
  });
});
