// nsm-ts against a real SPIRE (v1.13.3): WorkloadApiSource gets X.509-SVIDs from spire-agent's Workload API,
// follows the agent's rotation, and processes told apart by their primary gid get their own SPIFFE IDs.
// Needs the SPIRE binaries (scripts/build-spire.sh builds them); skips, saying so, only when they are absent.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { identityFromWorkloadApi, type WorkloadApiSource } from "../../src/security/workloadapi.js";
import type { Identity } from "../../src/security/identity.js";
import { Spire, spireBinDir, spireBinaries, workloadSelectors } from "../helpers/spire.js";

const bins = spireBinaries();
const skip = bins ? false : `SPIRE binaries not found in ${spireBinDir()}: run scripts/build-spire.sh`;

const td = "nsm.test";
const mainId = `spiffe://${td}/e2e/main`;
const childId = `spiffe://${td}/e2e/child`;
/** The child's primary group: any number works for root; this one is unlikely to be a real group. */
const childGid = 47_101;
/** Short-lived SVIDs, so the agent rotates them within the test (at about half their lifetime). */
const ttlSeconds = 30;

const workloadApiModule = new URL("../../src/security/workloadapi.ts", import.meta.url).href;

/** Runs a Node child with the given primary gid that prints the SPIFFE ID the agent gives it. */
function spiffeIdOfChild(addr: string, gid: number, timeoutMs = 30_000): Promise<string> {
  const code = `
    const { identityFromWorkloadApi } = await import(${JSON.stringify(workloadApiModule)});
    const source = await identityFromWorkloadApi(${JSON.stringify(addr)}, { timeoutMs: ${timeoutMs} });
    console.log(source.current().spiffeId);
    source.close();
  `;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", code],
      { gid, timeout: 60_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

describe("SPIRE Workload API", { skip }, () => {
  let spire: Spire;
  let source: WorkloadApiSource | undefined;
  const errors: string[] = [];

  before(async () => {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    spire = await Spire.start({
      trustDomain: td,
      x509SvidTtl: "1m",
      entries: [
        { spiffeId: mainId, selectors: workloadSelectors(gid, uid), x509SvidTtlSeconds: ttlSeconds },
        { spiffeId: childId, selectors: workloadSelectors(childGid, uid), x509SvidTtlSeconds: ttlSeconds },
      ],
    });
  });

  after(async () => {
    source?.close();
    await spire?.stop();
  });

  it("gets an X.509-SVID from spire-agent, then the agent's rotation", async () => {
    source = await identityFromWorkloadApi(spire.workloadApiAddr, {
      timeoutMs: 30_000,
      onError: (e) => errors.push(e.message),
    }).catch((e: Error) => {
      throw new Error(`${e.message}\n${spire.logs()}`);
    });
    const first = source.current();
    assert.equal(first.spiffeId, mainId);
    assert.equal(first.privateKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
    const leaf = new X509Certificate(first.certificatePem as string);
    const bundle = new X509Certificate(spire.bundlePem);
    assert.ok(first.caPem?.includes(bundle.toString().trim()), "the bundle is the server's");
    const notBefore = new Date(leaf.validFrom).getTime();
    const notAfter = new Date(leaf.validTo).getTime();
    const lifetime = notAfter - notBefore;
    assert.ok(lifetime <= (ttlSeconds + 60) * 1000, `lifetime ${lifetime} ms: the entry's TTL applies`);

    // The agent renews past half the lifetime (±10% jitter) on its next sync (every 5 s).
    const latest = notBefore + lifetime * 0.55 + 5_000 + 10_000;
    const waitMs = Math.max(latest - Date.now(), 1_000);
    const current = source;
    const rotated = await new Promise<Identity>((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new Error(`no rotation within ${waitMs} ms (errors: ${errors.join("; ")})\n${spire.logs()}`));
      }, waitMs);
      const stop = current.onRotate((id) => {
        clearTimeout(timer);
        stop();
        resolve(id);
      });
    });
    assert.equal(rotated.spiffeId, mainId);
    const next = new X509Certificate(rotated.certificatePem as string);
    assert.notEqual(next.serialNumber, leaf.serialNumber);
    assert.ok(!rotated.privateKey.equals(first.privateKey), "a new key");
    assert.ok(new Date(next.validTo).getTime() > notAfter);
    assert.equal(source.current(), rotated);
  });

  it("a process with another primary gid gets its own SPIFFE ID", async () => {
    assert.equal(await spiffeIdOfChild(spire.workloadApiAddr, childGid), childId);
  });

  it("a process that matches no entry is refused (PERMISSION_DENIED), and told so", async () => {
    await assert.rejects(
      spiffeIdOfChild(spire.workloadApiAddr, childGid + 1, 2_000),
      /last error: .*PERMISSION_DENIED.*no registration entry matches this process/,
    );
  });
});
