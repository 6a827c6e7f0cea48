// End-to-end mTLS with X.509-SVIDs over grpc-js (tcp and unix): each side sees the other's SPIFFE ID, a
// token signed with the client's SVID key verifies against the certificate the server saw, and peers with
// certificates from another CA (or without a SPIFFE ID) are refused.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { generatedIdentity, loadIdentity, type Identity } from "./identity.js";
import {
  channelCredentials,
  peerCertificate,
  secureChannelOptions,
  serverCredentials,
} from "./credentials.js";
import { TestPki, type CaFiles } from "./testpki.js";
import { generateToken, tokenFromMetadata, tokenMetadata, verifyToken } from "./token.js";

interface WhoamiReply {
  /** The client's SPIFFE ID as the server saw it in the TLS handshake. */
  peer: string | null;
  /** The sub of the client's nsm-client-token after verification with that peer's certificate key. */
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

async function whoami(call: grpc.ServerUnaryCall<Buffer, Buffer>): Promise<WhoamiReply> {
  const peer = peerCertificate(call);
  const reply: WhoamiReply = { peer: peer?.spiffeId ?? null, tokenSub: null };
  const presented = tokenFromMetadata(call.metadata);
  if (presented) {
    try {
      reply.tokenSub = (await verifyToken(presented.token, peer?.publicKey ?? "embedded")).sub ?? null;
    } catch (e) {
      reply.tokenError = (e as Error).message;
    }
  }
  return reply;
}

async function startServer(
  identity: Identity | undefined,
  address: string,
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
    server.bindAsync(address, serverCredentials(identity), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

interface CallResult<T> {
  reply: T;
  /** The server's SPIFFE ID as the client saw it. */
  serverId: string | undefined;
}

function call<T>(
  target: string,
  identity: Identity | undefined,
  path: string,
  request: Buffer,
  decode: (b: Buffer) => T,
  md = new grpc.Metadata(),
): Promise<CallResult<T>> {
  const client = new grpc.Client(target, channelCredentials(identity), secureChannelOptions(identity));
  return new Promise<CallResult<T>>((resolve, reject) => {
    const c = client.makeUnaryRequest(
      path,
      raw,
      raw,
      request,
      md,
      { deadline: Date.now() + 5000 },
      (err, res) => {
        client.close();
        if (err || !res) reject(err ?? new Error("no response"));
        else resolve({ reply: decode(res), serverId: peerCertificate(c)?.spiffeId });
      },
    );
  });
}

const who = (
  target: string,
  identity: Identity | undefined,
  md?: grpc.Metadata,
): Promise<CallResult<WhoamiReply>> =>
  call(target, identity, whoamiPath, Buffer.alloc(0), (b) => JSON.parse(b.toString()) as WhoamiReply, md);

/** grpc.health.v1.Health/Check with service "" — SERVING is field 1 = 1. */
const healthCheck = (target: string, identity: Identity | undefined): Promise<CallResult<number>> =>
  call(target, identity, "/grpc.health.v1.Health/Check", Buffer.alloc(0), (b) =>
    b[0] === 0x08 ? (b[1] ?? 0) : 0,
  );

/** The call failed in the TLS handshake; `detail` matches the client-side reason when the client refused. */
function unavailable(detail?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    const e = err as grpc.ServiceError;
    assert.equal(e.code, grpc.status.UNAVAILABLE, String(err));
    if (detail) assert.match(e.details, detail);
    return true;
  };
}

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
    const tcp = await startServer(server, "127.0.0.1:0");
    target = `127.0.0.1:${tcp.port}`;
    const sock = join(pki.dir, "server.sock");
    const unix = await startServer(server, `unix://${sock}`);
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
    // A server whose bundle also holds the other CA (federation) accepts the same client: the refusal above
    // is the CA check and nothing else.
    const bundle = `${server.caPem ?? ""}${readFileSync(otherCa.certFile, "utf8")}`;
    const federated = await startServer({ ...server, caPem: bundle }, "127.0.0.1:0");
    running.push(federated.server);
    assert.equal((await who(`127.0.0.1:${federated.port}`, stranger)).reply.peer, "spiffe://other.org/x");
  });

  it("refuses a client without a certificate", async () => {
    await assert.rejects(who(target, undefined), unavailable());
    await assert.rejects(who(target, generatedIdentity("no-cert")), unavailable());
  });

  it("the client refuses a server from another CA, or one without a SPIFFE ID", async () => {
    // The rogue server trusts our CA, so it would accept the client: the refusal is the client's.
    const rogue = await startServer(stranger, "127.0.0.1:0");
    running.push(rogue.server);
    await assert.rejects(who(`127.0.0.1:${rogue.port}`, client), unavailable(/unable to verify/));

    const ca = pki.ca("ca-nosan");
    const plain = identitiesWithoutServerSan(pki, ca);
    const tlsOnly = await startServer(plain.server, "127.0.0.1:0");
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

describe("insecure transport", () => {
  it("works without certificates; no peer certificate, tokens verify with their embedded key", async () => {
    const { server, port } = await startServer(undefined, "127.0.0.1:0");
    try {
      const target = `127.0.0.1:${port}`;
      const nsc = generatedIdentity("nsc");
      const { token, expires } = await generateToken(nsc, []);
      const { reply, serverId } = await who(target, nsc, tokenMetadata(token, expires));
      assert.equal(reply.peer, null);
      assert.equal(serverId, undefined);
      assert.equal(reply.tokenSub, nsc.spiffeId);
    } finally {
      server.forceShutdown();
    }
  });
});
