// Identities: generated key pairs and X.509-SVIDs loaded from PEM files (made by openssl in a temp dir).
import assert from "node:assert/strict";
import { X509Certificate, createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  checkSpiffeId,
  generatedIdentity,
  hasCertificate,
  loadIdentity,
  spiffeIdFromCertificate,
} from "./identity.js";
import { TestPki, type CaFiles } from "./testpki.js";

function assertThrowsWith(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  });
}

describe("generatedIdentity", () => {
  it("makes a P-256 key pair named spiffe://<trust domain>/<name>", () => {
    const id = generatedIdentity("nsmgr-node1");
    assert.equal(id.spiffeId, "spiffe://nsm-ts.local/nsmgr-node1");
    assert.equal(id.privateKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    assert.equal(id.publicKey.type, "public");
    assert.equal(hasCertificate(id), false);
    assert.equal(
      generatedIdentity("ns/default/pod/nsc-1", "k8s.nsm").spiffeId,
      "spiffe://k8s.nsm/ns/default/pod/nsc-1",
    );
  });

  it("refuses names that make an invalid SPIFFE ID", () => {
    assertThrowsWith(() => generatedIdentity("a b"), "a b", "path segment");
    assertThrowsWith(() => generatedIdentity("x", "Upper.Case"), "trust domain");
    assertThrowsWith(() => generatedIdentity("a//b"), "path segment");
  });
});

describe("checkSpiffeId", () => {
  it("accepts valid ids and rejects others", () => {
    checkSpiffeId("spiffe://example.org");
    checkSpiffeId("spiffe://example.org/ns/default/pod/a_b-c.d");
    assertThrowsWith(() => checkSpiffeId("https://example.org/x"), "spiffe://");
    assertThrowsWith(() => checkSpiffeId("spiffe://example.org/a/../b"), '".."');
    assertThrowsWith(() => checkSpiffeId("spiffe://example.org/a/"), "path segment");
  });
});

describe("loadIdentity", () => {
  let pki: TestPki;
  let ca: CaFiles;
  before(() => {
    pki = new TestPki();
    ca = pki.ca("ca");
  });
  after(() => pki.cleanup());

  it("loads an SVID: SPIFFE ID from the URI SAN, keys, PEMs and NotAfter", () => {
    const files = pki.leaf(ca, "a");
    const id = loadIdentity(files);
    assert.equal(id.spiffeId, "spiffe://example.org/ns/default/pod/a");
    assert.ok(hasCertificate(id));
    assert.ok(createPublicKey(id.privateKey).equals(id.publicKey));
    assert.ok(new X509Certificate(readFileSync(files.certFile)).publicKey.equals(id.publicKey));
    assert.equal(id.keyPem, readFileSync(files.keyFile, "utf8"));
    assert.equal(id.caPem, readFileSync(ca.certFile, "utf8"));
    const notAfter = id.notAfter?.getTime() ?? 0;
    assert.ok(
      notAfter > Date.now() + 86_400_000 && notAfter < Date.now() + 3 * 86_400_000,
      `${String(id.notAfter)}`,
    );
    assert.equal(spiffeIdFromCertificate(id.certificatePem ?? ""), id.spiffeId);
  });

  it("loads a chain through an intermediate CA", () => {
    const inter = pki.intermediate(ca, "inter");
    const files = pki.leaf(inter, "b");
    const id = loadIdentity(files);
    assert.equal(id.spiffeId, "spiffe://example.org/ns/default/pod/b");
    assert.equal((id.certChainPem?.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    // Without the intermediate in the cert file, the leaf does not chain to the bundle.
    const bare = pki.leaf(inter, "c", { noChain: true });
    assertThrowsWith(() => loadIdentity(bare), bare.certFile, "not signed by any CA", bare.caFile);
  });

  it("names the file and the problem", () => {
    const noSan = pki.leaf(ca, "nosan", { uri: null });
    assertThrowsWith(() => loadIdentity(noSan), noSan.certFile, "no URI SAN", "spiffe://");
    const dns = pki.leaf(ca, "web", { uri: "https://example.org/x" });
    assertThrowsWith(() => loadIdentity(dns), dns.certFile, "no URI SAN");

    const rsa = pki.leaf(ca, "rsa", { keyType: "rsa" });
    assertThrowsWith(() => loadIdentity(rsa), rsa.certFile, "rsa", "EC P-256");
    const p384 = pki.leaf(ca, "p384", { keyType: "p384" });
    assertThrowsWith(() => loadIdentity(p384), p384.certFile, "secp384r1", "EC P-256");

    const a = pki.leaf(ca, "a2");
    const other = pki.leaf(ca, "other");
    assertThrowsWith(
      () => loadIdentity({ ...a, keyFile: other.keyFile }),
      other.keyFile,
      "does not match the certificate",
      a.certFile,
    );
    const p384Key = join(pki.dir, "p384-only.key");
    writeFileSync(
      p384Key,
      generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey.export({
        type: "pkcs8",
        format: "pem",
      }),
    );
    assertThrowsWith(() => loadIdentity({ ...a, keyFile: p384Key }), p384Key, "EC P-256");

    const foreign = pki.ca("foreign-ca");
    assertThrowsWith(
      () => loadIdentity({ ...a, caFile: foreign.certFile }),
      "not signed by any CA",
      foreign.certFile,
    );

    const garbage = join(pki.dir, "garbage.pem");
    writeFileSync(garbage, "hello\n");
    assertThrowsWith(() => loadIdentity({ ...a, certFile: garbage }), garbage, "no PEM");
    assertThrowsWith(() => loadIdentity({ ...a, keyFile: garbage }), garbage, "not a PEM private key");
    assertThrowsWith(() => loadIdentity({ ...a, caFile: garbage }), garbage, "no PEM");
    const missing = join(pki.dir, "missing.pem");
    assertThrowsWith(() => loadIdentity({ ...a, certFile: missing }), missing, "cannot read");

    const later = new Date(Date.now() + 10 * 86_400_000);
    assertThrowsWith(() => loadIdentity(a, later), a.certFile, "expired");
  });
});
