// Identity sources: the current SVID, rotation listeners (ours and grpc-js CertificateProvider ones), and
// FileIdentitySource following rewrites of its PEM files, keeping the last good identity while a set is
// half-written, and stopping its watchers and timer on close.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, mock } from "node:test";
import type { experimental } from "@grpc/grpc-js";
import { TrustDomainCa } from "./ca.js";
import { generatedIdentity, type Identity, type IdentityFiles } from "./identity.js";
import { BaseIdentitySource, FileIdentitySource, StaticIdentitySource } from "./source.js";

type CaUpdate = experimental.CaCertificateUpdate | null;
type IdUpdate = experimental.IdentityCertificateUpdate | null;

const dir = mkdtempSync(join(tmpdir(), "nsm-ts-source-"));
let ca: TrustDomainCa;
let fileCount = 0;

before(async () => {
  ca = await TrustDomainCa.create("nsm.test");
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh set of SVID files in `dir`. */
async function svidFiles(
  spiffeId = "spiffe://nsm.test/nsmgr",
): Promise<IdentityFiles & { identity: Identity }> {
  return ca.writeFiles(dir, `svid-${++fileCount}`, spiffeId);
}

/** Rewrites `files` with `identity`, bundle and key first, certificate last (as a careful writer does). */
function rewrite(files: IdentityFiles, identity: Identity): void {
  writeFileSync(files.caFile, identity.caPem ?? "");
  writeFileSync(files.keyFile, identity.keyPem ?? "");
  writeFileSync(files.certFile, identity.certChainPem ?? "");
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Lets queued microtasks run (the current certificate reaches a new grpc-js listener asynchronously). */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Waits until `cond` holds, polling; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

/** A source whose identity the test sets (the base class's update() is protected). */
class ManualSource extends BaseIdentitySource {
  set(identity: Identity): void {
    this.update(identity);
  }
}

describe("BaseIdentitySource", () => {
  it("has no identity until the first update; ready() waits for it, rotation listeners see later ones", async () => {
    const source = new ManualSource();
    assert.throws(() => source.current(), /no X.509-SVID received yet/);
    const ready = source.ready();
    const rotated: Identity[] = [];
    const stop = source.onRotate((i) => rotated.push(i));
    const a = await ca.issue("spiffe://nsm.test/a");
    source.set(a);
    assert.equal(await ready, a);
    assert.equal(await source.ready(), a);
    assert.deepEqual(rotated, [], "the first identity is not a rotation");
    const b = await ca.issue("spiffe://nsm.test/a");
    source.set(b);
    assert.equal(source.current(), b);
    assert.deepEqual(rotated, [b]);
    stop();
    source.set(a);
    assert.deepEqual(rotated, [b], "an unsubscribed listener is not called");
    source.close();
  });

  it("feeds grpc-js certificate listeners: the current one when added, every update, not after removal", async () => {
    const a = await ca.issue("spiffe://nsm.test/a");
    const source = new StaticIdentitySource(a);
    const cas: CaUpdate[] = [];
    const ids: IdUpdate[] = [];
    const caL = (u: CaUpdate): void => void cas.push(u);
    const idL = (u: IdUpdate): void => void ids.push(u);
    source.addCaCertificateListener(caL);
    source.addIdentityCertificateListener(idL);
    await tick();
    assert.equal(cas[0]?.caCertificate.toString(), a.caPem);
    assert.equal(ids[0]?.certificate.toString(), a.certChainPem);
    assert.equal(ids[0]?.privateKey.toString(), a.keyPem);
    const b = await ca.issue("spiffe://nsm.test/a");
    const rotating = new ManualSource();
    rotating.set(a);
    rotating.addCaCertificateListener(caL);
    rotating.addIdentityCertificateListener(idL);
    await tick();
    rotating.set(b);
    assert.equal(ids.at(-1)?.certificate.toString(), b.certChainPem, "every update reaches them");
    assert.equal(ids.length, 3);
    rotating.removeCaCertificateListener(caL);
    rotating.removeIdentityCertificateListener(idL);
    rotating.set(a);
    await tick();
    assert.equal(cas.length, 3);
    assert.equal(ids.length, 3, "removed listeners hear nothing more");
    // Removed before the current certificate was handed over: never called.
    const late: IdUpdate[] = [];
    const lateL = (u: IdUpdate): void => void late.push(u);
    rotating.addIdentityCertificateListener(lateL);
    rotating.removeIdentityCertificateListener(lateL);
    await tick();
    assert.deepEqual(late, []);
    source.close();
    rotating.close();
  });

  it("a generated identity (insecure mode) feeds no certificate listener", async () => {
    const source = new StaticIdentitySource(generatedIdentity("nsc"));
    let calls = 0;
    source.addIdentityCertificateListener(() => calls++);
    source.addCaCertificateListener(() => calls++);
    await tick();
    assert.equal(calls, 0);
    assert.equal(source.current().spiffeId, "spiffe://nsm-ts.local/nsc");
    source.close();
  });
});

describe("FileIdentitySource", () => {
  it("loads the files and fails at once, naming the file, when the first load fails", async () => {
    const files = await svidFiles();
    const source = new FileIdentitySource(files, undefined, 50);
    try {
      assert.equal(source.current().spiffeId, "spiffe://nsm.test/nsmgr");
      assert.equal(source.current().certificatePem, files.identity.certificatePem);
    } finally {
      source.close();
    }
    assert.throws(
      () => new FileIdentitySource({ ...files, keyFile: join(dir, "missing-key.pem") }),
      /key file .*missing-key\.pem: cannot read it/,
    );
  });

  it("rotates when the files are rewritten: onRotate and the grpc-js listeners get the new SVID", async () => {
    const files = await svidFiles();
    const errors: Error[] = [];
    const source = new FileIdentitySource(files, (e) => errors.push(e), 40);
    try {
      const rotated: Identity[] = [];
      source.onRotate((i) => rotated.push(i));
      const ids: IdUpdate[] = [];
      const cas: CaUpdate[] = [];
      source.addIdentityCertificateListener((u) => void ids.push(u));
      source.addCaCertificateListener((u) => void cas.push(u));
      await tick();
      assert.equal(ids.length, 1, "the current SVID when added");

      const next = await ca.issue("spiffe://nsm.test/nsmgr");
      rewrite(files, next);
      await until(() => rotated.length > 0, "onRotate after the rewrite");
      await sleep(150); // further watch events and ticks of an unchanged set are no rotations
      assert.equal(rotated.length, 1);
      assert.equal(rotated[0]?.certificatePem, next.certificatePem);
      assert.equal(source.current().certificatePem, next.certificatePem);
      assert.ok(source.current().privateKey.equals(next.privateKey), "the new key signs from now on");
      assert.equal(ids.length, 2);
      assert.equal(ids[1]?.certificate.toString(), next.certChainPem);
      assert.equal(ids[1]?.privateKey.toString(), next.keyPem);
      assert.equal(cas.length, 2);
      assert.equal(cas[1]?.caCertificate.toString(), ca.bundlePem);

      // A new trust bundle (the CA rotated) reaches the CA listeners.
      const ca2 = await TrustDomainCa.create("nsm.test");
      const third = await ca2.issue("spiffe://nsm.test/nsmgr");
      rewrite(files, third);
      await until(() => rotated.length > 1, "onRotate after the CA rotated");
      assert.equal(cas.at(-1)?.caCertificate.toString(), ca2.bundlePem);
      assert.equal(ids.at(-1)?.certificate.toString(), third.certChainPem);
    } finally {
      source.close();
    }
  });

  it("a half-written or bad file keeps the old identity and reports onError once", async () => {
    const files = await svidFiles();
    const errors: Error[] = [];
    const source = new FileIdentitySource(files, (e) => errors.push(e), 30);
    try {
      const old = source.current();
      const rotated: Identity[] = [];
      source.onRotate((i) => rotated.push(i));
      const next = await ca.issue("spiffe://nsm.test/nsmgr");
      const pem = next.certChainPem ?? "";
      // The writer stopped in the middle of the certificate.
      writeFileSync(files.certFile, pem.slice(0, Math.floor(pem.length / 2)));
      await until(() => errors.length > 0, "onError for the half-written file");
      await sleep(300); // ten ticks and the watch events: the same failure is not reported again
      assert.equal(errors.length, 1, errors.map((e) => e.message).join("; "));
      assert.match(errors[0]?.message ?? "", /certificate file .*svid\.pem: no PEM "CERTIFICATE" block/);
      assert.equal(source.current(), old, "the last good identity stays in use");
      assert.deepEqual(rotated, []);

      // The set is completed (key first: the broken certificate still fails the same way): rotation.
      writeFileSync(files.keyFile, next.keyPem ?? "");
      writeFileSync(files.certFile, pem);
      await until(() => rotated.length > 0, "rotation once the files are whole");
      assert.equal(source.current().certificatePem, next.certificatePem);
      assert.equal(errors.length, 1);

      // A new failure (another message) is reported again, once.
      writeFileSync(files.keyFile, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n");
      await until(() => errors.length > 1, "onError for the bad key");
      await sleep(200);
      assert.equal(errors.length, 2);
      assert.match(errors[1]?.message ?? "", /key file .*key\.pem: not a PEM private key/);
      assert.equal(source.current().certificatePem, next.certificatePem);
    } finally {
      source.close();
    }
  });

  it("close stops the watchers and the timer: later rewrites change nothing", async () => {
    const files = await svidFiles();
    const setSpy = mock.method(globalThis, "setInterval");
    const clearSpy = mock.method(globalThis, "clearInterval");
    let source: FileIdentitySource;
    try {
      source = new FileIdentitySource(files, () => undefined, 20);
      assert.equal(setSpy.mock.callCount(), 1, "one poll timer");
      const timer = setSpy.mock.calls[0]?.result;
      source.close();
      assert.ok(
        clearSpy.mock.calls.some((c) => c.arguments[0] === timer),
        "close clears the poll timer",
      );
    } finally {
      setSpy.mock.restore();
      clearSpy.mock.restore();
    }
    const old = source.current();
    const rotated: Identity[] = [];
    source.onRotate((i) => rotated.push(i));
    const errors: Error[] = [];
    const closedSource = new FileIdentitySource(files, (e) => errors.push(e), 20);
    closedSource.close();
    rewrite(files, await ca.issue("spiffe://nsm.test/nsmgr"));
    writeFileSync(files.certFile, "half");
    await sleep(200);
    assert.equal(source.current(), old);
    assert.deepEqual(rotated, []);
    assert.deepEqual(errors, [], "a closed source reads no files");
  });
});
