// End-to-end mTLS with X.509-SVIDs over grpc-js (tcp and unix): each side sees the other's SPIFFE ID, a
// token signed with the client's SVID key verifies against the certificate the server saw, peers with
// certificates from another CA (or without a SPIFFE ID) are refused at the handshake, peers of a trust domain
// the other side does not authorize are refused (server: UNAUTHENTICATED before any handler; client: at the
// handshake), the client learns the server's certificate before its first call completes, and a rotated
// source serves new connections while established ones carry on.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { TrustDomainCa } from "./ca.js";
import { peerCert } from "./caller.js";
import { generatedIdentity, loadIdentity, type Identity } from "./identity.js";
import {
  channelCredentials,
  refusePeer,
  secureChannelOptions,
  serverCredentials,
  trustDomainAuthorizer,
  trustDomainOf,
  type PeerAuthorizer,
} from "./credentials.js";
import { BaseIdentitySource, StaticIdentitySource, type IdentitySource } from "./source.js";
import { TestPki, type CaFiles } from "./testpki.js";
import { decodeToken, generateToken, tokenFromMetadata, tokenMetadata, verifyToken } from "./token.js";

interface WhoamiReply {
  /** The client's SPIFFE ID as the server saw it in the TLS handshake. */
  peer: string | null;
  /** SHA-256 fingerprint of the client certificate the server saw. */
  peerFingerprint: string | null;
  /** The sub of the client's nsm-client-token: verified with that peer's certificate key under mTLS. */
  tokenSub: string | null;
  tokenError?: string;
}

const raw = (b: Buffer): Buffer => b;
const whoamiPath = "/nsmts.test.Whoami/Who";
const whoamiService: grpc.ServiceDefinition = {
  Who: {
    path: whoamiPath,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};

/** The peer's leaf certificate as grpc-js shows it on a call (server or client side), parsed once. */
function peerCertificate(call: {
  getAuthContext?: () => { sslPeerCertificate?: { raw?: Buffer } } | null;
}): { certificate: X509Certificate; spiffeId?: string; publicKey: X509Certificate["publicKey"] } | undefined {
  const der = call.getAuthContext?.()?.sslPeerCertificate?.raw;
  const p = peerCert(der);
  return der && p
    ? { certificate: new X509Certificate(der), spiffeId: p.spiffeId, publicKey: p.publicKey }
    : undefined;
}

/** Calls the handler saw (for checks of what happened before a call reached the server). */
let handlerHook: (() => void) | undefined;

async function whoami(call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<WhoamiReply> {
  handlerHook?.();
  const peer = peerCertificate(call);
  const reply: WhoamiReply = {
    peer: peer?.spiffeId ?? null,
    peerFingerprint: peer?.certificate.fingerprint256 ?? null,
    tokenSub: null,
  };
  const presented = tokenFromMetadata(call.metadata);
  if (presented) {
    try {
      // Insecure: nothing to verify with, the claim is all there is.
      const claims = peer ? await verifyToken(presented.token, peer.publicKey) : decodeToken(presented.token);
      reply.tokenSub = claims.sub ?? null;
    } catch (e) {
      reply.tokenError = (e as Error).message;
    }
  }
  return reply;
}

const exampleOrg = trustDomainAuthorizer(["example.org"]);

async function startServer(
  source: IdentitySource | undefined,
  address: string,
  authorize: PeerAuthorizer = exampleOrg,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(whoamiService, {
    Who: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      whoami(call).then(
        (r) => cb(null, Buffer.from(JSON.stringify(r))),
        (e: Error) => cb({ code: grpc.status.INTERNAL, details: e.message }),
      );
    },
  });
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, serverCredentials(source, authorize), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { server, port };
}

const src = (identity: Identity | undefined): IdentitySource | undefined =>
  identity ? new StaticIdentitySource(identity) : undefined;

interface CallResult<T> {
  reply: T;
  /** The server's SPIFFE ID as the client saw it. */
  serverId: string | undefined;
  /** SHA-256 fingerprint of the server certificate of this call's connection. */
  serverFingerprint: string | undefined;
}

interface ClientOptions {
  authorize?: PeerAuthorizer;
  onPeer?: (raw: Buffer) => void;
}

function newClient(target: string, identity: Identity | undefined, opts: ClientOptions = {}): grpc.Client {
  return newClientFrom(target, src(identity), opts);
}

function newClientFrom(
  target: string,
  source: IdentitySource | undefined,
  opts: ClientOptions = {},
): grpc.Client {
  return new grpc.Client(
    target,
    channelCredentials(source, opts.authorize ?? exampleOrg, opts.onPeer),
    secureChannelOptions(source?.current()),
  );
}

function callOn<T>(
  client: grpc.Client,
  path: string,
  decode: (b: Buffer) => T,
  md = new grpc.Metadata(),
): Promise<CallResult<T>> {
  return new Promise<CallResult<T>>((resolve, reject) => {
    const c = client.makeUnaryRequest(
      path,
      raw,
      raw,
      Buffer.alloc(0),
      md,
      { deadline: Date.now() + 5000 },
      (err, res) => {
        if (err || !res) reject(err ?? new Error("no response"));
        else {
          const peer = peerCertificate(c);
          resolve({
            reply: decode(res),
            serverId: peer?.spiffeId,
            serverFingerprint: peer?.certificate.fingerprint256,
          });
        }
      },
    );
  });
}

async function call<T>(
  target: string,
  identity: Identity | undefined,
  path: string,
  decode: (b: Buffer) => T,
  md?: grpc.Metadata,
  opts?: ClientOptions,
): Promise<CallResult<T>> {
  const client = newClient(target, identity, opts);
  try {
    return await callOn(client, path, decode, md);
  } finally {
    client.close();
  }
}

const decodeWho = (b: Buffer): WhoamiReply => JSON.parse(b.toString()) as WhoamiReply;

const who = (
  target: string,
  identity: Identity | undefined,
  md?: grpc.Metadata,
  opts?: ClientOptions,
): Promise<CallResult<WhoamiReply>> => call(target, identity, whoamiPath, decodeWho, md, opts);

/** grpc.health.v1.Health/Check with service "" — SERVING is field 1 = 1. */
const healthCheck = (target: string, identity: Identity | undefined): Promise<CallResult<number>> =>
  call(target, identity, "/grpc.health.v1.Health/Check", (b) => (b[0] === 0x08 ? (b[1] ?? 0) : 0));

/** The call failed with `code`; `detail` matches the reason. */
function failedWith(code: grpc.status, detail?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    const e = err as grpc.ServiceError;
    assert.equal(e.code, code, String(err));
    if (detail) assert.match(e.details, detail);
    return true;
  };
}

/** The call failed in the TLS handshake; `detail` matches the client-side reason when the client refused. */
const unavailable = (detail?: RegExp): ((err: unknown) => boolean) =>
  failedWith(grpc.status.UNAVAILABLE, detail);

const fingerprint = (identity: Identity): string =>
  new X509Certificate(identity.certificatePem ?? "").fingerprint256;

describe("peer authorization helpers", () => {
  it("trustDomainOf, trustDomainAuthorizer, refusePeer", async () => {
    assert.equal(trustDomainOf("spiffe://a.test/ns/x"), "a.test");
    assert.equal(trustDomainOf("spiffe://a.test"), "a.test");
    const only = trustDomainAuthorizer(["a.test", "c.test"]);
    assert.equal(only("spiffe://a.test/x"), true);
    assert.equal(only("spiffe://c.test/y/z"), true);
    assert.equal(only("spiffe://b.test/x"), false);
    assert.equal(only("spiffe://a.test.evil/x"), false);
    const ca = await TrustDomainCa.create("b.test");
    const b = new X509Certificate((await ca.issue("spiffe://b.test/nsc")).certificatePem ?? "").raw;
    assert.equal(refusePeer(b, trustDomainAuthorizer(["b.test"])), undefined);
    assert.match(
      refusePeer(b, only) ?? "",
      /spiffe:\/\/b\.test\/nsc is not authorized \(trust domain b\.test\)/,
    );
    assert.match(refusePeer(undefined, only) ?? "", /no certificate/);
    assert.match(refusePeer(Buffer.from(ca.bundleDer), only) ?? "", /spiffe:\/\/b\.test is not authorized/);
  });
});

describe("mTLS with X.509-SVIDs", () => {
  let pki: TestPki;
  let server: Identity;
  let client: Identity;
  let stranger: Identity;
  let otherCa: CaFiles;
  let running: grpc.Server[] = [];
  let target: string;
  let unixTarget: string;

  before(async () => {
    pki = new TestPki();
    const ca = pki.ca("ca");
    server = loadIdentity(pki.leaf(ca, "server"));
    client = loadIdentity(pki.leaf(ca, "client"));
    otherCa = pki.ca("other-ca", "other.org");
    // A workload of another CA that nevertheless trusts our CA: only its peer's CA check can refuse it.
    stranger = {
      ...loadIdentity(pki.leaf(otherCa, "stranger", { uri: "spiffe://other.org/x" })),
      caPem: readFileSync(ca.certFile, "utf8"),
    };
    const tcp = await startServer(src(server), "127.0.0.1:0");
    target = `127.0.0.1:${tcp.port}`;
    const sock = join(pki.dir, "server.sock");
    const unix = await startServer(src(server), `unix://${sock}`);
    unixTarget = `unix://${sock}`;
    running = [tcp.server, unix.server];
  });

  after(() => {
    for (const s of running) s.forceShutdown();
    pki.cleanup();
  });

  it("each side sees the other's SPIFFE ID (tcp and unix)", async () => {
    for (const t of [target, unixTarget]) {
      const { reply, serverId } = await who(t, client);
      assert.equal(reply.peer, "spiffe://example.org/ns/default/pod/client", t);
      assert.equal(serverId, "spiffe://example.org/ns/default/pod/server", t);
    }
    const health = await healthCheck(target, client);
    assert.equal(health.reply, 1, "health SERVING over mTLS");
  });

  it("a token signed with the client's SVID key verifies against the certificate the server saw", async () => {
    const { token, expires } = await generateToken(client, [server.spiffeId], undefined, server.notAfter);
    const { reply } = await who(target, client, tokenMetadata(token, expires));
    assert.equal(reply.tokenSub, client.spiffeId);
    // Another workload's token replayed over the client's connection does not verify.
    const other = loadIdentity(pki.leaf(pki.ca("ca3"), "replayed"));
    const replayed = await generateToken(other, [server.spiffeId]);
    const bad = await who(target, client, tokenMetadata(replayed.token, replayed.expires));
    assert.equal(bad.reply.tokenSub, null);
    assert.match(bad.reply.tokenError ?? "", /does not verify/);
  });

  it("refuses a client whose certificate comes from another CA", async () => {
    await assert.rejects(who(target, stranger), unavailable());
    await assert.rejects(who(unixTarget, stranger), unavailable());
    // A server whose bundle also holds the other CA (federation) and authorizes its trust domain accepts the
    // same client: the refusal above is the CA check and nothing else.
    const bundle = `${server.caPem ?? ""}${readFileSync(otherCa.certFile, "utf8")}`;
    const federated = await startServer(
      src({ ...server, caPem: bundle }),
      "127.0.0.1:0",
      trustDomainAuthorizer(["example.org", "other.org"]),
    );
    running.push(federated.server);
    assert.equal((await who(`127.0.0.1:${federated.port}`, stranger)).reply.peer, "spiffe://other.org/x");
  });

  it("refuses a client without a certificate", async () => {
    await assert.rejects(who(target, undefined), unavailable());
    await assert.rejects(who(target, generatedIdentity("no-cert")), unavailable());
  });

  it("the client refuses a server from another CA, or one without a SPIFFE ID", async () => {
    // The rogue server trusts our CA, so it would accept the client: the refusal is the client's.
    const rogue = await startServer(src(stranger), "127.0.0.1:0", trustDomainAuthorizer(["example.org"]));
    running.push(rogue.server);
    await assert.rejects(who(`127.0.0.1:${rogue.port}`, client), unavailable(/unable to verify/));

    const ca = pki.ca("ca-nosan");
    const plain = identitiesWithoutServerSan(pki, ca);
    const tlsOnly = await startServer(src(plain.server), "127.0.0.1:0");
    running.push(tlsOnly.server);
    await who(`127.0.0.1:${tlsOnly.port}`, plain.client).then(
      () => assert.fail("a server certificate without a SPIFFE ID must be refused"),
      unavailable(/no spiffe:\/\/ URI SAN/),
    );
  });
});

/**
 * A server identity whose certificate chains to `ca` but has no URI SAN (loadIdentity refuses such files, so
 * the PEMs are put in by hand), and a proper client identity under the same CA.
 */
function identitiesWithoutServerSan(pki: TestPki, ca: CaFiles): { server: Identity; client: Identity } {
  const client = loadIdentity(pki.leaf(ca, "nosan-client"));
  const files = pki.leaf(ca, "nosan-server", { uri: null });
  const certPem = readFileSync(files.certFile, "utf8");
  const server: Identity = {
    ...client,
    spiffeId: "spiffe://example.org/none",
    certificatePem: certPem,
    certChainPem: certPem,
    keyPem: readFileSync(files.keyFile, "utf8"),
  };
  return { server, client };
}

describe("trust domain authorization (federated bundles)", () => {
  let caA: TrustDomainCa;
  let caB: TrustDomainCa;
  let bundle: string;
  let serverA: Identity;
  let clientA: Identity;
  let clientB: Identity;
  let serverB: Identity;
  const running: grpc.Server[] = [];

  before(async () => {
    caA = await TrustDomainCa.create("a.test");
    caB = await TrustDomainCa.create("b.test");
    // Everybody trusts both CAs: only the authorizers keep the domains apart.
    bundle = caA.bundlePem + caB.bundlePem;
    serverA = { ...(await caA.issue("spiffe://a.test/nsmgr")), caPem: bundle };
    clientA = { ...(await caA.issue("spiffe://a.test/nsc")), caPem: bundle };
    clientB = { ...(await caB.issue("spiffe://b.test/nsc")), caPem: bundle };
    serverB = { ...(await caB.issue("spiffe://b.test/nsmgr")), caPem: bundle };
  });

  after(() => {
    for (const s of running) s.forceShutdown();
  });

  const authA = trustDomainAuthorizer(["a.test"]);
  const authAB = trustDomainAuthorizer(["a.test", "b.test"]);

  it("a server authorizing only trust domain A refuses a client of B with UNAUTHENTICATED", async () => {
    const s = await startServer(src(serverA), "127.0.0.1:0", authA);
    running.push(s.server);
    const t = `127.0.0.1:${s.port}`;
    let reached = 0;
    handlerHook = () => reached++;
    try {
      const refused = failedWith(
        grpc.status.UNAUTHENTICATED,
        /mTLS: the peer spiffe:\/\/b\.test\/nsc is not authorized \(trust domain b\.test\)/,
      );
      await assert.rejects(who(t, clientB, undefined, { authorize: authAB }), refused);
      // Before any handler: health too.
      await assert.rejects(
        call(t, clientB, "/grpc.health.v1.Health/Check", (b) => b, undefined, { authorize: authAB }),
        refused,
      );
      assert.equal(reached, 0, "the handler never ran for the refused client");
      // The same server serves its own trust domain.
      const ok = await who(t, clientA, undefined, { authorize: authAB });
      assert.equal(ok.reply.peer, "spiffe://a.test/nsc");
      assert.equal(reached, 1);
    } finally {
      handlerHook = undefined;
    }
  });

  it("a server authorizing A and B accepts the same client of B", async () => {
    const s = await startServer(src(serverA), "127.0.0.1:0", authAB);
    running.push(s.server);
    const { reply } = await who(`127.0.0.1:${s.port}`, clientB, undefined, { authorize: authAB });
    assert.equal(reply.peer, "spiffe://b.test/nsc");
  });

  it("each server keeps its own authorizer: one accepting B first does not open a server of A only", async () => {
    const fresh = { ...(await caB.issue("spiffe://b.test/nsc")), caPem: bundle };
    const open = await startServer(src(serverA), "127.0.0.1:0", authAB);
    const strict = await startServer(src(serverA), "127.0.0.1:0", authA);
    running.push(open.server, strict.server);
    assert.equal(
      (await who(`127.0.0.1:${open.port}`, fresh, undefined, { authorize: authAB })).reply.peer,
      "spiffe://b.test/nsc",
    );
    await assert.rejects(
      who(`127.0.0.1:${strict.port}`, fresh, undefined, { authorize: authAB }),
      failedWith(grpc.status.UNAUTHENTICATED, /not authorized \(trust domain b\.test\)/),
    );
  });

  it("a client authorizing only A refuses a server of B at the handshake, without reporting it", async () => {
    const s = await startServer(src(serverB), "127.0.0.1:0", authAB);
    running.push(s.server);
    const seen: Buffer[] = [];
    await assert.rejects(
      who(`127.0.0.1:${s.port}`, clientA, undefined, { authorize: authA, onPeer: (r) => seen.push(r) }),
      unavailable(/spiffe:\/\/b\.test\/nsmgr is not authorized/),
    );
    assert.deepEqual(seen, []);
  });
});

/** A source the test rotates by hand. */
class ManualSource extends BaseIdentitySource {
  constructor(identity: Identity) {
    super();
    this.update(identity);
  }
  rotate(identity: Identity): void {
    this.update(identity);
  }
}

describe("channel credentials report the server's certificate", () => {
  let ca: TrustDomainCa;
  let server: Identity;
  let client: Identity;
  let running: grpc.Server | undefined;
  let target: string;

  before(async () => {
    ca = await TrustDomainCa.create("example.org");
    server = await ca.issue("spiffe://example.org/nsmgr");
    client = await ca.issue("spiffe://example.org/nsc");
    const s = await startServer(src(server), "127.0.0.1:0");
    running = s.server;
    target = `127.0.0.1:${s.port}`;
  });

  after(() => running?.forceShutdown());

  it("onPeer gets the server certificate before the first call reaches the server", async () => {
    const events: string[] = [];
    const seen: Buffer[] = [];
    handlerHook = () => events.push(`handler after ${seen.length} peer report(s)`);
    try {
      const c = newClient(target, client, {
        onPeer: (r) => {
          seen.push(r);
          events.push("onPeer");
        },
      });
      try {
        const first = await callOn(c, whoamiPath, decodeWho);
        events.push("call done");
        assert.deepEqual(events, ["onPeer", "handler after 1 peer report(s)", "call done"]);
        assert.equal(new X509Certificate(seen[0] ?? Buffer.alloc(0)).fingerprint256, fingerprint(server));
        assert.equal(first.serverFingerprint, fingerprint(server));
        // Further calls on the same connection: no new handshake, no new report.
        await callOn(c, whoamiPath, decodeWho);
        assert.equal(seen.length, 1);
      } finally {
        c.close();
      }
    } finally {
      handlerHook = undefined;
    }
  });
});

describe("rotation", () => {
  it("after the sources rotate, a new connection presents the new certificates; an existing one keeps working", async () => {
    const ca = await TrustDomainCa.create("example.org");
    const server1 = await ca.issue("spiffe://example.org/nsmgr");
    const client1 = await ca.issue("spiffe://example.org/nsc");
    const serverSource = new ManualSource(server1);
    const clientSource = new ManualSource(client1);
    const { server, port } = await startServer(serverSource, "127.0.0.1:0");
    const target = `127.0.0.1:${port}`;
    const reportsOld: string[] = [];
    const reportsNew: string[] = [];
    const report = (to: string[]) => (r: Buffer) => void to.push(new X509Certificate(r).fingerprint256);
    const old = newClientFrom(target, clientSource, { onPeer: report(reportsOld) });
    let fresh: grpc.Client | undefined;
    try {
      const before = await callOn(old, whoamiPath, decodeWho);
      assert.equal(before.reply.peerFingerprint, fingerprint(client1));
      assert.equal(before.serverFingerprint, fingerprint(server1));

      const server2 = await ca.issue("spiffe://example.org/nsmgr");
      const client2 = await ca.issue("spiffe://example.org/nsc");
      serverSource.rotate(server2);
      clientSource.rotate(client2);

      // The established connection carries on with the certificates of its handshake.
      const still = await callOn(old, whoamiPath, decodeWho);
      assert.equal(still.reply.peerFingerprint, fingerprint(client1));
      assert.equal(still.serverFingerprint, fingerprint(server1));
      assert.deepEqual(reportsOld, [fingerprint(server1)]);

      // A new connection presents (and sees) the new ones; a token of the new key verifies against it.
      fresh = newClientFrom(target, clientSource, { onPeer: report(reportsNew) });
      const t = await generateToken(clientSource.current(), [server2.spiffeId]);
      const after = await callOn(fresh, whoamiPath, decodeWho, tokenMetadata(t.token, t.expires));
      assert.equal(after.reply.peerFingerprint, fingerprint(client2));
      assert.equal(after.reply.tokenSub, client2.spiffeId);
      assert.equal(after.serverFingerprint, fingerprint(server2));
      assert.deepEqual(reportsNew, [fingerprint(server2)]);

      // And the old connection still works after the new one was made.
      assert.equal((await callOn(old, whoamiPath, decodeWho)).reply.peerFingerprint, fingerprint(client1));
    } finally {
      old.close();
      fresh?.close();
      server.forceShutdown();
      serverSource.close();
      clientSource.close();
    }
  });
});

describe("insecure transport", () => {
  it("works without certificates: no peer certificate, the token's claim is unverified", async () => {
    const { server, port } = await startServer(undefined, "127.0.0.1:0");
    try {
      const target = `127.0.0.1:${port}`;
      const nsc = generatedIdentity("nsc");
      const { token, expires } = await generateToken(nsc, []);
      const { reply, serverId } = await who(target, undefined, tokenMetadata(token, expires));
      assert.equal(reply.peer, null);
      assert.equal(serverId, undefined);
      assert.equal(reply.tokenSub, nsc.spiffeId);
      // A source with a generated identity (no certificate) also means plaintext.
      const generated = new StaticIdentitySource(nsc);
      const plain = await startServer(generated, "127.0.0.1:0");
      try {
        const c = newClientFrom(`127.0.0.1:${plain.port}`, generated);
        try {
          assert.equal((await callOn(c, whoamiPath, decodeWho)).reply.peer, null);
        } finally {
          c.close();
        }
      } finally {
        plain.server.forceShutdown();
      }
    } finally {
      server.forceShutdown();
    }
  });
});
