// Tokens: ES256 JWS with sub/aud/exp/iat and no jwk header (verified with the signer's certificate key, as
// upstream), metadata round trip.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { StatusError } from "../core/errors.js";
import { generatedIdentity, loadIdentity, type Identity } from "./identity.js";
import { TestPki } from "./testpki.js";
import { TrustDomainCa } from "./ca.js";
import {
  TokenError,
  decodeToken,
  decodeTokenHeader,
  formatRfc3339Nano,
  generateToken,
  parseRfc3339,
  tokenExpiresKey,
  tokenFromMetadata,
  tokenKey,
  tokenMetadata,
  verifyPeerToken,
  verifyToken,
} from "./token.js";

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString("base64url");

async function rejectsWith(p: Promise<unknown>, reason: TokenError["reason"], text: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TokenError, `expected TokenError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    assert.ok(err.message.includes(text), `"${err.message}" should mention "${text}"`);
    return true;
  });
}

describe("generateToken / verifyToken (generated identity)", () => {
  const nsc = generatedIdentity("nsc");
  const nsmgr = generatedIdentity("nsmgr");

  it("signs ES256 with sub, aud, exp, iat and no jwk header", async () => {
    const now = new Date("2030-01-02T03:04:05.678Z");
    const { token, expires } = await generateToken(nsc, [nsmgr.spiffeId], 10 * 60_000, undefined, now);
    const header = decodeTokenHeader(token);
    assert.deepEqual(header, { alg: "ES256", typ: "JWT" }, "only alg and typ: upstream sends no jwk");
    const claims = decodeToken(token);
    assert.equal(claims.sub, "spiffe://nsm-ts.local/nsc");
    assert.deepEqual(claims.aud, ["spiffe://nsm-ts.local/nsmgr"]);
    assert.equal(claims.iat, Math.floor(now.getTime() / 1000));
    assert.equal(claims.exp, Math.floor(now.getTime() / 1000) + 600);
    assert.equal(expires.getTime(), (claims.exp ?? 0) * 1000);
    assert.deepEqual(await verifyToken(token, nsc.publicKey), claims);
  });

  it("verifies only with the signer's key, also after the same token verified with it", async () => {
    const { token } = await generateToken(nsc, [nsmgr.spiffeId]);
    await verifyToken(token, nsc.publicKey);
    // A verified token is remembered with its key: another key must still be checked, and fail.
    await rejectsWith(verifyToken(token, nsmgr.publicKey), "signature", "does not verify");
    await verifyToken(token, nsc.publicKey);
  });

  it("leaves aud out when the peer is unknown", async () => {
    const { token } = await generateToken(nsc, []);
    assert.deepEqual(decodeToken(token).aud, []);
    assert.ok(
      !("aud" in (JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as object)),
    );
  });

  it("caps exp at the identity's NotAfter and at capAt", async () => {
    const now = new Date("2030-01-01T00:00:00Z");
    const notAfter = new Date("2030-01-01T00:05:00Z");
    const capped: Identity = { ...nsc, notAfter };
    assert.equal(
      (await generateToken(capped, [], 600_000, undefined, now)).expires.getTime(),
      notAfter.getTime(),
    );
    const capAt = new Date("2030-01-01T00:02:30.900Z");
    const { expires, token } = await generateToken(capped, [], 600_000, capAt, now);
    assert.equal(expires.toISOString(), "2030-01-01T00:02:30.000Z");
    assert.equal(decodeToken(token).exp, expires.getTime() / 1000);
  });

  it("rejects a tampered payload", async () => {
    const { token } = await generateToken(nsc, [nsmgr.spiffeId]);
    const [h, p, s] = token.split(".");
    const claims = JSON.parse(Buffer.from(p ?? "", "base64url").toString()) as Record<string, unknown>;
    const forged = `${h}.${b64({ ...claims, sub: "spiffe://nsm-ts.local/admin" })}.${s}`;
    assert.equal(decodeToken(forged).sub, "spiffe://nsm-ts.local/admin");
    await rejectsWith(verifyToken(forged, nsc.publicKey), "signature", "does not verify");
  });

  it("rejects the wrong key, a header with a jwk of the signer and other algorithms", async () => {
    const { token } = await generateToken(nsc, []);
    await rejectsWith(verifyToken(token, nsmgr.publicKey), "signature", "does not verify");
    const [h, p, sig] = token.split(".");
    // A jwk header (what nsm-ts used to send) is not trusted, and changes the signing input.
    const withJwk = b64({ alg: "ES256", typ: "JWT", jwk: nsmgr.publicKey.export({ format: "jwk" }) });
    await rejectsWith(verifyToken(`${withJwk}.${p}.${sig}`, nsc.publicKey), "signature", "does not verify");
    await rejectsWith(verifyToken(`${withJwk}.${p}.${sig}`, nsmgr.publicKey), "signature", "does not verify");
    assert.equal(h, b64({ alg: "ES256", typ: "JWT" }));
    // alg "none" and HS256 are refused whatever the key.
    await rejectsWith(verifyToken(`${b64({ alg: "none" })}.${p}.`, nsc.publicKey), "signature", "");
    await rejectsWith(verifyToken(`${b64({ alg: "HS256" })}.${p}.AAAA`, nsc.publicKey), "signature", "");
  });

  it("a malformed token is 'malformed', not a signature failure", async () => {
    await rejectsWith(verifyToken("a.b", nsc.publicKey), "malformed", "not a JWT");
  });

  it("certificate identities sign the same way; exp is capped at the SVID's NotAfter", async () => {
    const pki = new TestPki();
    try {
      const id = loadIdentity(pki.leaf(pki.ca("ca"), "a"));
      const { token, expires } = await generateToken(id, [], 365 * 86_400_000);
      assert.equal(decodeTokenHeader(token).jwk, undefined, "no jwk header");
      assert.equal(decodeToken(token).sub, "spiffe://example.org/ns/default/pod/a");
      assert.ok(id.notAfter);
      assert.equal(expires.getTime(), Math.floor(id.notAfter.getTime() / 1000) * 1000);
      await verifyToken(token, id.publicKey);
    } finally {
      pki.cleanup();
    }
  });
});

describe("decodeToken", () => {
  it("throws TokenError('malformed') on anything but a JWT", () => {
    const bad = ["", "abc", "a.b", "a.b.c.d", `${b64({ alg: "ES256" })}.notjson.x`, `notjson.${b64({})}.x`];
    for (const t of bad)
      assert.throws(
        () => decodeToken(t),
        (e: unknown) => e instanceof TokenError && e.reason === "malformed",
        t,
      );
    const h = b64({ alg: "ES256" });
    assert.throws(() => decodeToken(`${h}.${b64({ sub: 5 })}.x`), /sub/);
    assert.throws(() => decodeToken(`${h}.${b64({ exp: "soon" })}.x`), /exp/);
    assert.throws(() => decodeToken(`${h}.${b64({ aud: [1] })}.x`), /aud/);
  });

  it("accepts aud as a single string (as some JWT libraries write it)", () => {
    const t = `${b64({ alg: "ES256" })}.${b64({ sub: "spiffe://a/b", aud: "spiffe://a/c", exp: 1 })}.x`;
    assert.deepEqual(decodeToken(t), { sub: "spiffe://a/b", aud: ["spiffe://a/c"], exp: 1 });
  });
});

describe("token metadata", () => {
  it("round-trips nsm-client-token and nsm-client-token-expires", () => {
    const expires = new Date("2030-05-06T07:08:09Z");
    const md = tokenMetadata("tok", expires);
    assert.equal(md.get(tokenKey)[0], "tok");
    assert.equal(md.get(tokenExpiresKey)[0], "2030-05-06T07:08:09Z");
    assert.deepEqual(tokenFromMetadata(md), { token: "tok", expires });
    const existing = new Metadata();
    existing.set("x-request-id", "r1");
    assert.equal(tokenMetadata("t", expires, existing), existing);
    assert.equal(existing.get("x-request-id")[0], "r1");
    assert.equal(tokenFromMetadata(new Metadata()), undefined);
  });

  it("reads Go's RFC3339Nano with nanoseconds and offsets", () => {
    const md = new Metadata();
    md.set(tokenKey, "tok");
    md.set(tokenExpiresKey, "2030-05-06T09:08:09.123456789+02:00");
    assert.equal(tokenFromMetadata(md)?.expires.toISOString(), "2030-05-06T07:08:09.123Z");
  });

  it("falls back to the token's exp, else INVALID_ARGUMENT", async () => {
    const { token, expires } = await generateToken(generatedIdentity("x"), []);
    const md = new Metadata();
    md.set(tokenKey, token);
    md.set(tokenExpiresKey, "tomorrow");
    assert.deepEqual(tokenFromMetadata(md), { token, expires });
    const bad = new Metadata();
    bad.set(tokenKey, "garbage");
    assert.throws(
      () => tokenFromMetadata(bad),
      (e: unknown) =>
        e instanceof StatusError && e.code === status.INVALID_ARGUMENT && e.message.includes(tokenExpiresKey),
    );
  });

  it("formats and parses RFC 3339", () => {
    assert.equal(formatRfc3339Nano(new Date("2030-01-01T00:00:00.500Z")), "2030-01-01T00:00:00.5Z");
    assert.equal(formatRfc3339Nano(new Date("2030-01-01T00:00:00.120Z")), "2030-01-01T00:00:00.12Z");
    assert.equal(parseRfc3339("2030-01-01T00:00:00Z")?.toISOString(), "2030-01-01T00:00:00.000Z");
    assert.equal(parseRfc3339("2030-01-01T00:00:00-01:30")?.toISOString(), "2030-01-01T01:30:00.000Z");
    for (const bad of [
      "",
      "2030-01-01",
      "2030-01-01T00:00:00",
      "2030-13-01T00:00:00Z",
      "x2030-01-01T00:00:00Z",
    ])
      assert.equal(parseRfc3339(bad), undefined, bad);
  });
});

describe("tokens across identities in one process", () => {
  let pki: TestPki;
  before(() => (pki = new TestPki()));
  after(() => pki.cleanup());

  it("a certificate identity's token verifies only with its certificate key", async () => {
    const ca = pki.ca("ca");
    const a = loadIdentity(pki.leaf(ca, "a"));
    const b = loadIdentity(pki.leaf(ca, "b"));
    const { token } = await generateToken(a, [b.spiffeId]);
    assert.deepEqual((await verifyToken(token, a.publicKey)).aud, [b.spiffeId]);
    await rejectsWith(verifyToken(token, b.publicKey), "signature", "does not verify");
  });
});

describe("verifyPeerToken (a peer's SVID rotated after the TLS handshake)", () => {
  let ca: TrustDomainCa;
  let rogue: TrustDomainCa;
  let old: Identity;
  let rotated: Identity;
  before(async () => {
    ca = await TrustDomainCa.create("rot.test");
    rogue = await TrustDomainCa.create("rot.test");
    old = await ca.issue("spiffe://rot.test/nsmgr");
    rotated = await ca.issue("spiffe://rot.test/nsmgr");
  });
  const peer = (): { publicKey: Identity["publicKey"]; spiffeId: string } => ({
    publicKey: old.publicKey,
    spiffeId: "spiffe://rot.test/nsmgr",
  });

  it("a token signed with the new key verifies through its x5c chain to our bundle", async () => {
    const { token } = await generateToken(rotated, ["spiffe://rot.test/fwd"]);
    assert.ok(Array.isArray(decodeTokenHeader(token).x5c), "an SVID-signed token carries x5c");
    await rejectsWith(verifyToken(token, old.publicKey), "signature", "does not verify");
    const claims = await verifyPeerToken(token, peer(), ca.bundlePem);
    assert.equal(claims.sub, "spiffe://rot.test/nsmgr");
  });

  it("refuses an x5c from another CA, of another identity, or without our bundle", async () => {
    const forged = await generateToken(await rogue.issue("spiffe://rot.test/nsmgr"), []);
    await rejectsWith(verifyPeerToken(forged.token, peer(), ca.bundlePem), "signature", "does not verify");
    const other = await generateToken(await ca.issue("spiffe://rot.test/intruder"), []);
    await rejectsWith(verifyPeerToken(other.token, peer(), ca.bundlePem), "signature", "does not verify");
    const fresh = await generateToken(rotated, []);
    await rejectsWith(verifyPeerToken(fresh.token, peer(), undefined), "signature", "does not verify");
  });

  it("the TLS key still verifies directly", async () => {
    const { token } = await generateToken(old, []);
    assert.equal((await verifyPeerToken(token, peer(), ca.bundlePem)).sub, "spiffe://rot.test/nsmgr");
  });
});
