import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import * as tls from "node:tls";
import { TrustDomainCa, clockSkewMs } from "./ca.js";
import { loadIdentity, pemBlocks, spiffeIdFromCertificate, type Identity } from "./identity.js";

const dir = mkdtempSync(join(tmpdir(), "nsm-ts-ca-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Both sides present SVIDs and require the peer's to chain to `ca`; resolves with each side's view. */
async function mtlsRoundTrip(
  server: Identity,
  client: Identity,
  serverTrusts: string,
  clientTrusts: string,
): Promise<{ serverSawClient: string; clientSawServer: string }> {
  let serverSawClient = "";
  const srv = tls.createServer(
    {
      cert: server.certChainPem,
      key: server.keyPem,
      ca: serverTrusts,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    },
    (sock) => {
      serverSawClient = spiffeIdFromCertificate(sock.getPeerX509Certificate() as X509Certificate);
      sock.end("hello");
    },
  );
  srv.on("tlsClientError", () => undefined); // the client side reports the failure
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  try {
    return await new Promise((resolve, reject) => {
      const sock = tls.connect({
        host: "127.0.0.1",
        port,
        cert: client.certChainPem,
        key: client.keyPem,
        ca: clientTrusts,
        // SVIDs carry no DNS names: the peer is authenticated by its SPIFFE ID, checked below.
        checkServerIdentity: () => undefined,
      });
      let data = "";
      sock.on("data", (d: Buffer) => (data += d.toString()));
      sock.on("error", reject);
      sock.on("end", () => {
        const clientSawServer = spiffeIdFromCertificate(sock.getPeerX509Certificate() as X509Certificate);
        sock.destroy();
        if (data !== "hello") reject(new Error(`unexpected data ${data}`));
        else resolve({ serverSawClient, clientSawServer });
      });
    });
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
}

describe("TrustDomainCa", () => {
  it("issues SVIDs that loadIdentity accepts, from files", async () => {
    const ca = await TrustDomainCa.create("nsm.test");
    const files = await ca.writeFiles(dir, "nsmgr", "spiffe://nsm.test/nsmgr", 60_000);
    assert.equal(statSync(files.keyFile).mode & 0o777, 0o600);
    const id = loadIdentity(files);
    assert.equal(id.spiffeId, "spiffe://nsm.test/nsmgr");
    assert.equal(id.certificatePem, files.identity.certificatePem);
    assert.ok(id.privateKey.equals(files.identity.privateKey));
    const left = (id.notAfter as Date).getTime() - Date.now();
    assert.ok(left > 50_000 && left <= 60_000, `NotAfter ${left} ms away`);
  });

  it("makes a root CA and leaves shaped as the X.509-SVID standard asks", async () => {
    const ca = await TrustDomainCa.create("nsm.test");
    const root = new X509Certificate(ca.bundlePem);
    assert.equal(root.ca, true);
    assert.equal(root.subjectAltName, "URI:spiffe://nsm.test");
    assert.equal(ca.trustDomainId, "spiffe://nsm.test");
    assert.deepEqual(new X509Certificate(ca.bundleDer).raw, root.raw);

    const before = Date.now();
    const a = await ca.issue("spiffe://nsm.test/ns/default/pod/nsc-1");
    const b = await ca.issue("spiffe://nsm.test/ns/default/pod/nsc-1");
    const leaf = new X509Certificate(a.certificatePem as string);
    assert.equal(leaf.ca, false);
    assert.equal(leaf.subjectAltName, "URI:spiffe://nsm.test/ns/default/pod/nsc-1");
    assert.deepEqual([...(leaf.keyUsage ?? [])].sort(), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.ok(leaf.verify(root.publicKey));
    const skew = before - new Date(leaf.validFrom).getTime();
    assert.ok(skew >= clockSkewMs - 2_000 && skew <= clockSkewMs + 1_000, `NotBefore ${skew} ms back`);
    // Each issue is a rotation: a new key and a new serial.
    const other = new X509Certificate(b.certificatePem as string);
    assert.notEqual(other.serialNumber, leaf.serialNumber);
    assert.ok(!a.privateKey.equals(b.privateKey));
  });

  it("chains leaves through an intermediate when asked", async () => {
    const ca = await TrustDomainCa.create("nsm.test", { intermediate: true });
    const files = await ca.writeFiles(dir, "mid", "spiffe://nsm.test/forwarder", 60_000);
    assert.equal(pemBlocks(files.identity.certChainPem as string).length, 2);
    assert.equal(pemBlocks(ca.bundlePem).length, 1);
    assert.equal(loadIdentity(files).spiffeId, "spiffe://nsm.test/forwarder");
  });

  it("refuses IDs of another trust domain unless asked", async () => {
    const ca = await TrustDomainCa.create("nsm.test");
    await assert.rejects(ca.issue("spiffe://other.test/x"), /signs only its own trust domain/);
    const foreign = await ca.issue("spiffe://other.test/x", 60_000, { allowForeignTrustDomain: true });
    assert.equal(foreign.spiffeId, "spiffe://other.test/x");
    await assert.rejects(TrustDomainCa.create("Bad Domain"), /trust domain/);
  });

  it("issues at a given clock (expired SVIDs are refused by loadIdentity)", async () => {
    const ca = await TrustDomainCa.create("nsm.test");
    const old = await ca.issue("spiffe://nsm.test/old", 60_000, { now: new Date(Date.now() - 3_600_000) });
    assert.ok((old.notAfter as Date).getTime() < Date.now());
    const files = {
      certFile: join(dir, "old.pem"),
      keyFile: join(dir, "old-key.pem"),
      caFile: join(dir, "ca.pem"),
    };
    writeFileSync(files.certFile, old.certChainPem as string);
    writeFileSync(files.keyFile, old.keyPem as string);
    writeFileSync(files.caFile, ca.bundlePem);
    assert.throws(() => loadIdentity(files), /expired/);
  });

  it("works for Node TLS: mutual TLS 1.3 with both sides presenting SVIDs", async () => {
    for (const intermediate of [false, true]) {
      const ca = await TrustDomainCa.create("nsm.test", { intermediate });
      const server = await ca.issue("spiffe://nsm.test/nsmgr");
      const client = await ca.issue("spiffe://nsm.test/nsc");
      const seen = await mtlsRoundTrip(server, client, ca.bundlePem, ca.bundlePem);
      assert.deepEqual(seen, {
        serverSawClient: "spiffe://nsm.test/nsc",
        clientSawServer: "spiffe://nsm.test/nsmgr",
      });
    }
  });

  it("a second CA of the same trust domain is not trusted", async () => {
    const ca = await TrustDomainCa.create("nsm.test");
    const rogue = await TrustDomainCa.create("nsm.test");
    const server = await ca.issue("spiffe://nsm.test/nsmgr");
    const intruder = await rogue.issue("spiffe://nsm.test/nsc");
    await assert.rejects(mtlsRoundTrip(server, intruder, ca.bundlePem, ca.bundlePem));
    await assert.rejects(mtlsRoundTrip(intruder, server, ca.bundlePem, ca.bundlePem), /unable to verify/);
  });
});
