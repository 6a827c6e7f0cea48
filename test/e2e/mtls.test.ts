// With certificates every link is mTLS and identities come from the certificates (issue 3, §5): a local
// path where every hop runs with an X.509-SVID; clients without a certificate of the trust domain fail.
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { NsmClient } from "../../src/components/client.js";
import { createSecurity } from "../../src/components/security.js";
import { TestPki, type LeafFiles } from "../../src/security/testpki.js";
import { decodeToken } from "../../src/security/token.js";
import { startComponent, tempDir, type Component } from "../helpers/proc.js";

const pki = new TestPki();
const dir = tempDir("nsm-mtls-");
const procs: Component[] = [];
const sock = (n: string) => `unix://${join(dir.path, `${n}.sock`)}`;
const flags = (l: LeafFiles) => ["--cert-file", l.certFile, "--key-file", l.keyFile, "--ca-file", l.caFile];
let leaves: Record<string, LeafFiles>;

describe("mTLS with X.509-SVIDs", () => {
  before(async () => {
    const ca = pki.ca("root", "nsm.test");
    leaves = Object.fromEntries(
      ["registry", "nsmgr", "fwd", "nse", "nsc"].map((n) => [
        n,
        pki.leaf(ca, n, { uri: `spiffe://nsm.test/ns/nsm/pod/${n}` }),
      ]),
    );
    const reg = await startComponent(
      [
        "registry",
        "--name",
        "registry",
        "--store",
        "memory",
        "--listen-on",
        "tcp://127.0.0.1:0",
        ...flags(leaves.registry!),
      ],
      "registry serving",
    );
    procs.push(reg);
    procs.push(
      await startComponent(
        [
          "nsmgr",
          "--name",
          "nsmgr",
          "--listen-on",
          sock("nsmgr"),
          "--registry-url",
          reg.urls[0]!,
          ...flags(leaves.nsmgr!),
        ],
        "nsmgr ready",
      ),
    );
    procs.push(
      await startComponent(
        [
          "forwarder",
          "noop",
          "--name",
          "fwd",
          "--listen-on",
          sock("fwd"),
          "--connect-to",
          sock("nsmgr"),
          ...flags(leaves.fwd!),
        ],
        "forwarder ready",
      ),
    );
    procs.push(
      await startComponent(
        [
          "nse",
          "icmp-responder",
          "--name",
          "nse",
          "--listen-on",
          sock("nse"),
          "--connect-to",
          sock("nsmgr"),
          "--services",
          "secure-svc",
          "--cidr",
          "169.254.20.0/24",
          ...flags(leaves.nse!),
        ],
        "endpoint ready",
      ),
    );
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop();
    pki.cleanup();
    dir.remove();
  });

  it("every segment is signed by the SPIFFE ID of its hop's certificate", async () => {
    const nsc = new NsmClient({
      name: "nsc",
      nsmgrUrl: sock("nsmgr"),
      security: createSecurity({ name: "nsc", files: leaves.nsc! }),
    });
    const conn = await nsc.request({ service: "secure-svc" });
    const subs = conn.path!.pathSegments.map((s) => decodeToken(s.token).sub);
    assert.deepEqual(
      subs,
      ["nsc", "nsmgr", "fwd", "nse"].map((n) => `spiffe://nsm.test/ns/nsm/pod/${n}`),
    );
    await nsc.closeAll();
  });

  it("a client without a certificate cannot connect", async () => {
    const nsc = new NsmClient({
      name: "plain",
      nsmgrUrl: sock("nsmgr"),
      security: createSecurity({ name: "plain", insecure: true }),
      requestTimeoutMs: 3000,
    });
    await assert.rejects(nsc.request({ service: "secure-svc" }));
    await nsc.closeAll();
  });

  it("a client with a certificate from another CA cannot connect", async () => {
    const other = pki.ca("other", "evil.test");
    const leaf = pki.leaf(other, "mallory", { uri: "spiffe://evil.test/mallory" });
    const nsc = new NsmClient({
      name: "mallory",
      nsmgrUrl: sock("nsmgr"),
      security: createSecurity({ name: "mallory", files: leaf }),
      requestTimeoutMs: 3000,
    });
    await assert.rejects(nsc.request({ service: "secure-svc" }));
    await nsc.closeAll();
  });
});
