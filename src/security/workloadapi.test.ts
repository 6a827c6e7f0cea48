import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { WorkloadApiServer } from "../../test/helpers/workloadapi-server.js";
import { SpiffeWorkloadAPIService, type X509SVIDResponse } from "../api/workload.js";
import { GrpcClient, collect } from "../core/client.js";
import { TrustDomainCa } from "./ca.js";
import { pemBlocks, type Identity } from "./identity.js";
import {
  WorkloadApiSource,
  identityFromWorkloadApi,
  splitDer,
  workloadApiUrl,
  workloadMetadata,
} from "./workloadapi.js";

const dir = mkdtempSync(join(tmpdir(), "nsm-ts-wl-"));
let socketCount = 0;
const socket = (): string => join(dir, `agent-${++socketCount}.sock`);
let ca: TrustDomainCa;

before(async () => {
  ca = await TrustDomainCa.create("nsm.test");
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Resolves with the next value `subscribe` delivers, or rejects after `ms`. */
function next<T>(subscribe: (deliver: (v: T) => void) => () => void, ms = 5_000, what = "event"): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    const stop = subscribe((v) => {
      clearTimeout(timer);
      stop();
      resolve(v);
    });
  });
}

/** Errors a source reports, with a way to wait for one matching a pattern. */
function errorLog(): { onError: (e: Error) => void; seen: Error[]; waitFor: (re: RegExp) => Promise<Error> } {
  const seen: Error[] = [];
  const waiters: { re: RegExp; resolve: (e: Error) => void }[] = [];
  return {
    seen,
    onError: (e) => {
      seen.push(e);
      for (const w of waiters.splice(0)) {
        if (w.re.test(e.message)) w.resolve(e);
        else waiters.push(w);
      }
    },
    waitFor: (re) => {
      const hit = seen.find((e) => re.test(e.message));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.push({ re, resolve }));
    },
  };
}

function sameCert(a: Identity, b: Identity): boolean {
  return a.certificatePem === b.certificatePem;
}

describe("workloadApiUrl", () => {
  it("accepts the address forms of the standard", () => {
    assert.equal(workloadApiUrl("unix:///run/spire/agent.sock"), "unix:///run/spire/agent.sock");
    assert.equal(workloadApiUrl("unix:/run/spire/agent.sock"), "unix:///run/spire/agent.sock");
    assert.equal(workloadApiUrl("tcp://127.0.0.1:8000"), "tcp://127.0.0.1:8000");
    assert.equal(workloadApiUrl("tcp://[::1]:8000"), "tcp://[::1]:8000");
  });

  it("refuses the forms it forbids, saying why", () => {
    assert.throws(() => workloadApiUrl("unix://host/run/agent.sock"), /no authority/);
    assert.throws(() => workloadApiUrl("unix:relative.sock"), /absolute/);
    assert.throws(() => workloadApiUrl("unix:///a.sock?x=1"), /no query/);
    assert.throws(() => workloadApiUrl("tcp://localhost:8000"), /IP address/);
    assert.throws(() => workloadApiUrl("tcp://127.0.0.1"), /port/);
    assert.throws(() => workloadApiUrl("tcp://127.0.0.1:8000/foo"), /no path/);
    assert.throws(() => workloadApiUrl("http://127.0.0.1:8000"), /scheme "http"/);
    assert.throws(() => workloadApiUrl("/run/agent.sock"), /not a URI/);
  });

  it("falls back to SPIFFE_ENDPOINT_SOCKET, and says what to set without it", () => {
    const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
    try {
      delete process.env.SPIFFE_ENDPOINT_SOCKET;
      assert.throws(() => new WorkloadApiSource(), /SPIFFE_ENDPOINT_SOCKET/);
      process.env.SPIFFE_ENDPOINT_SOCKET = "unix:/nonexistent/agent.sock";
      const s = new WorkloadApiSource();
      assert.equal(s.url, "unix:///nonexistent/agent.sock");
      s.close();
    } finally {
      if (saved === undefined) delete process.env.SPIFFE_ENDPOINT_SOCKET;
      else process.env.SPIFFE_ENDPOINT_SOCKET = saved;
    }
  });
});

describe("splitDer", () => {
  it("splits concatenated certificates, and refuses garbage", async () => {
    const a = await ca.issue("spiffe://nsm.test/a");
    const raws = [a.certificatePem as string, ca.bundlePem].map((p) => new X509Certificate(p).raw);
    const parts = splitDer(Buffer.concat(raws), "chain");
    assert.deepEqual(parts, raws);
    assert.deepEqual(splitDer(Buffer.alloc(0), "empty"), []);
    assert.throws(() => splitDer(Buffer.from([0x30, 0x05, 1]), "short"), /past the end/);
    assert.throws(() => splitDer(Buffer.from([0x04, 0x00]), "odd"), /not the start of a DER SEQUENCE/);
  });
});

describe("WorkloadApiSource against a Workload API server", () => {
  it("gets the first SVID, then rotations, and feeds grpc-js certificate listeners", async () => {
    const server = new WorkloadApiServer(ca, "spiffe://nsm.test/nsmgr");
    const addr = await server.start(socket());
    const log = errorLog();
    const source = await identityFromWorkloadApi(addr, { onError: log.onError, timeoutMs: 5_000 });
    try {
      const first = source.current();
      assert.equal(first.spiffeId, "spiffe://nsm.test/nsmgr");
      assert.ok(sameCert(first, server.current));
      assert.equal(first.certChainPem, server.current.certChainPem);
      assert.equal(first.caPem, ca.bundlePem);
      assert.ok(first.privateKey.equals(server.current.privateKey));
      assert.equal(first.notAfter?.getTime(), server.current.notAfter?.getTime());

      const certs: string[] = [];
      const cas: string[] = [];
      source.addIdentityCertificateListener((u) => certs.push(u?.certificate.toString() ?? "none"));
      source.addCaCertificateListener((u) => cas.push(u?.caCertificate.toString() ?? "none"));
      await new Promise((r) => setImmediate(r)); // listeners get the current one soon after they subscribe
      assert.equal(certs.length, 1);

      const rotated = next<Identity>((d) => source.onRotate(d), 5_000, "rotation");
      const issued = await server.rotate();
      const got = await rotated;
      assert.ok(sameCert(got, issued));
      assert.ok(!sameCert(got, first));
      assert.ok(sameCert(source.current(), issued));
      assert.equal(certs.length, 2);
      assert.equal(certs[1], issued.certChainPem);
      assert.equal(cas.at(-1), ca.bundlePem);
      assert.deepEqual(log.seen, []);
    } finally {
      source.close();
      server.stop();
    }
  });

  it("reconnects after the server restarts, keeping the last SVID meanwhile", async () => {
    const path = socket();
    const server = new WorkloadApiServer(ca, "spiffe://nsm.test/forwarder");
    const addr = await server.start(path);
    const log = errorLog();
    const source = await identityFromWorkloadApi(addr, {
      onError: log.onError,
      timeoutMs: 5_000,
      maxBackoffMs: 200,
    });
    try {
      const first = source.current();
      server.stop();
      await log.waitFor(/failed the X\.509-SVID stream|ended the X\.509-SVID stream/);
      assert.ok(sameCert(source.current(), first), "the last SVID stays in use while the agent is away");

      // The agent comes back (its SVID rotated while it was away): the client finds it again.
      const issued = await server.rotate();
      const rotated = next<Identity>((d) => source.onRotate(d), 5_000, "SVID after restart");
      await server.start(path);
      assert.ok(sameCert(await rotated, issued));
      assert.equal(server.calls, 2);
    } finally {
      source.close();
      server.stop();
    }
  });

  it("a reconnect that re-sends the same SVID is not a rotation; PERMISSION_DENIED is reported and retried", async () => {
    const server = new WorkloadApiServer(ca, "spiffe://nsm.test/nse");
    const addr = await server.start(socket());
    const log = errorLog();
    const source = await identityFromWorkloadApi(addr, {
      onError: log.onError,
      timeoutMs: 5_000,
      maxBackoffMs: 100,
    });
    let rotations = 0;
    source.onRotate(() => rotations++);
    try {
      server.deny();
      const err = await log.waitFor(/PERMISSION_DENIED|no identity issued/);
      assert.match(err.message, /no registration entry matches/);
      server.deny(false);
      const deadline = Date.now() + 5_000;
      while (server.openStreams === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(server.openStreams, 1, "the client came back");
      assert.ok(server.calls >= 2);
      assert.equal(rotations, 0);
    } finally {
      source.close();
      server.stop();
    }
  });

  it("close() cancels the stream and stops reconnecting", async () => {
    const server = new WorkloadApiServer(ca, "spiffe://nsm.test/closing");
    const addr = await server.start(socket());
    const source = await identityFromWorkloadApi(addr, { timeoutMs: 5_000 });
    assert.equal(server.openStreams, 1);
    source.close();
    await source.done; // the loop has ended: no pending backoff timer
    const deadline = Date.now() + 2_000;
    while (server.openStreams > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(server.openStreams, 0, "the server saw the stream cancelled");
    await server.rotate(); // nothing listens any more
    assert.equal(server.calls, 1);
    server.stop();
  });

  it("the server refuses calls without the workload.spiffe.io metadata (INVALID_ARGUMENT)", async () => {
    const server = new WorkloadApiServer(ca, "spiffe://nsm.test/nsc");
    const addr = await server.start(socket());
    const client = new GrpcClient(addr);
    try {
      await assert.rejects(collect(client.serverStream(SpiffeWorkloadAPIService.fetchX509Svid, {})), (e) => {
        assert.equal((e as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT);
        assert.match((e as Error).message, /security header missing/);
        return true;
      });
      const wrong = new grpc.Metadata();
      wrong.set("workload.spiffe.io", "True");
      await assert.rejects(
        collect(client.serverStream(SpiffeWorkloadAPIService.fetchX509Bundles, {}, { metadata: wrong })),
        (e) => (e as grpc.ServiceError).code === grpc.status.INVALID_ARGUMENT,
      );
      assert.equal(server.refusedForMetadata, 2);
      // With it, bundles are served.
      const stream = client.serverStream(
        SpiffeWorkloadAPIService.fetchX509Bundles,
        {},
        { metadata: workloadMetadata() },
      );
      for await (const res of stream) {
        assert.deepEqual(Object.keys(res.bundles), ["spiffe://nsm.test"]);
        break;
      }
      stream.cancel();
    } finally {
      client.close();
      server.stop();
    }
  });

  it("gives up at once on UNIMPLEMENTED (not a Workload API server), naming the socket", async () => {
    const path = socket();
    const other = new grpc.Server();
    await new Promise<void>((resolve, reject) =>
      other.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    try {
      const t0 = Date.now();
      await assert.rejects(
        identityFromWorkloadApi(`unix://${path}`, { timeoutMs: 10_000 }),
        new RegExp(`Workload API at unix://${path}.*UNIMPLEMENTED`),
      );
      assert.ok(Date.now() - t0 < 5_000);
    } finally {
      other.forceShutdown();
    }
  });

  it("times out with the socket and the last error in the message when nobody serves", async () => {
    const path = join(dir, "nobody.sock");
    await assert.rejects(
      identityFromWorkloadApi(`unix://${path}`, { timeoutMs: 400, initialBackoffMs: 50 }),
      (e) => {
        const msg = (e as Error).message;
        assert.match(
          msg,
          new RegExp(`no X\\.509-SVID from the SPIFFE Workload API at unix://${path} within 400 ms`),
        );
        assert.match(msg, /last error: .*UNAVAILABLE/);
        assert.match(msg, /registration entry/);
        return true;
      },
    );
  });

  it("picks the asked-for identity among several; federated bundles join the trust bundle", async () => {
    const partner = await TrustDomainCa.create("partner.test");
    const server = new WorkloadApiServer(ca, ["spiffe://nsm.test/a", "spiffe://nsm.test/b"], {
      federatedWith: [partner],
    });
    const addr = await server.start(socket());
    const first = await identityFromWorkloadApi(addr, { timeoutMs: 5_000 });
    const picked = await identityFromWorkloadApi(addr, { timeoutMs: 5_000, spiffeId: "spiffe://nsm.test/b" });
    const log = errorLog();
    const missing = new WorkloadApiSource(addr, { spiffeId: "spiffe://nsm.test/c", onError: log.onError });
    try {
      assert.equal(first.current().spiffeId, "spiffe://nsm.test/a");
      assert.equal(picked.current().spiffeId, "spiffe://nsm.test/b");
      assert.deepEqual([...picked.federatedBundles.keys()], ["spiffe://partner.test"]);
      assert.equal(picked.federatedBundles.get("spiffe://partner.test"), partner.bundlePem);
      assert.equal(picked.current().caPem, ca.bundlePem + partner.bundlePem);
      const err = await log.waitFor(/offers/);
      assert.match(
        err.message,
        /offers spiffe:\/\/nsm\.test\/a, spiffe:\/\/nsm\.test\/b, not spiffe:\/\/nsm\.test\/c/,
      );
    } finally {
      first.close();
      picked.close();
      missing.close();
      server.stop();
    }
  });

  it("carries intermediates in the chain", async () => {
    const midCa = await TrustDomainCa.create("nsm.test", { intermediate: true });
    const server = new WorkloadApiServer(midCa, "spiffe://nsm.test/mid");
    const source = await identityFromWorkloadApi(await server.start(socket()), { timeoutMs: 5_000 });
    try {
      assert.equal(pemBlocks(source.current().certChainPem as string).length, 2);
      assert.equal(source.current().caPem, midCa.bundlePem);
    } finally {
      source.close();
      server.stop();
    }
  });

  it("refuses SVIDs that do not hold together, and keeps waiting for a good one", async () => {
    const path = socket();
    const good = await ca.issue("spiffe://nsm.test/good");
    const other = await ca.issue("spiffe://nsm.test/other");
    const rogue = await TrustDomainCa.create("nsm.test");
    const svid = (id: Identity, over: Partial<X509SVIDResponse["svids"][number]> = {}): X509SVIDResponse => ({
      svids: [
        {
          spiffeId: id.spiffeId,
          x509Svid: Buffer.concat(
            pemBlocks(id.certChainPem as string).map((p) => new X509Certificate(p).raw),
          ),
          x509SvidKey: id.privateKey.export({ type: "pkcs8", format: "der" }),
          bundle: ca.bundleDer,
          hint: "",
          ...over,
        },
      ],
      crl: [],
      federatedBundles: {},
    });
    const responses: X509SVIDResponse[] = [
      { svids: [], crl: [], federatedBundles: {} },
      svid(good, { spiffeId: "spiffe://nsm.test/claimed" }),
      svid(good, { x509SvidKey: other.privateKey.export({ type: "pkcs8", format: "der" }) }),
      svid(good, { bundle: rogue.bundleDer }),
      svid(good, { x509SvidKey: Buffer.from("not a key") }),
      svid(good),
    ];
    const server = new grpc.Server();
    server.addService(SpiffeWorkloadAPIService, {
      fetchX509Svid: (call: grpc.ServerWritableStream<unknown, X509SVIDResponse>) => {
        for (const r of responses) call.write(r);
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    const log = errorLog();
    const source = await identityFromWorkloadApi(`unix://${path}`, {
      timeoutMs: 5_000,
      onError: log.onError,
    });
    try {
      assert.ok(sameCert(source.current(), good));
      const expected = [
        /sent a response without X\.509-SVIDs/,
        /"spiffe:\/\/nsm\.test\/claimed": the leaf certificate names spiffe:\/\/nsm\.test\/good instead/,
        /x509_svid_key does not match the certificate/,
        /the certificate chain does not lead to a CA of the trust bundle/,
        /x509_svid_key is not a DER PKCS#8 private key/,
      ];
      assert.equal(log.seen.length, expected.length, log.seen.map((e) => e.message).join("\n"));
      expected.forEach((re, i) => assert.match(log.seen[i]?.message ?? "", re));
    } finally {
      source.close();
      server.forceShutdown();
    }
  });
});
