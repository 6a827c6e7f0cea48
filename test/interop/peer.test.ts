// The Go interop peer against itself: before it judges nsm-ts, it must behave as upstream NSM does between its
// own components. Go client (in a test network namespace) → Go nsmgr (+ no-op forwarder) → Go endpoint (in
// another one), over unix sockets with mTLS and descriptor passing: every hop signs its segment, the tokens
// chain, the client's and the endpoint's namespaces arrive as descriptors; refusals and the recvfd timeout
// come out as upstream's. Also runs the peer's Go unit tests (fd transceiver, tokens, policies, paths).
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { TrustDomainCa } from "../../src/security/ca.js";
import type { IdentityFiles } from "../../src/security/identity.js";
import { Netns } from "../helpers/netns.js";
import { tempDir } from "../helpers/proc.js";
import {
  ensurePeer,
  inodeUrl,
  pathProblems,
  runPeer,
  startPeer,
  svidFlags,
  type PeerConnection,
  type PeerEvent,
  type PeerProc,
} from "./helpers.js";

const td = "interop.test";
const id = (n: string) => `spiffe://${td}/${n}`;
const dir = tempDir("nsm-interop-peer-");
const net = new Netns("nsip");
const sock = (n: string) => `unix://${join(dir.path, `${n}.sock`)}`;
const procs: PeerProc[] = [];
let svid: Record<string, IdentityFiles>;
let clientNs: string, endpointNs: string;

const conn = (e: PeerEvent) => e.connection as PeerConnection;

describe(
  "Go peer against itself (upstream behaviour between its own components)",
  { timeout: 180_000 },
  () => {
    before(async () => {
      ensurePeer();
      const ca = await TrustDomainCa.create(td);
      svid = {};
      for (const n of ["nsc", "nsmgr", "nse", "bad-nse"])
        svid[n] = await ca.writeFiles(join(dir.path, "svid"), n, id(n));
      clientNs = net.add("c");
      endpointNs = net.add("e");
      const nse = startPeer(
        [
          "endpoint",
          "--listen-on",
          sock("nse"),
          "--name",
          "nse",
          "--service",
          "peer-svc",
          ...svidFlags(svid.nse!),
        ],
        { netns: endpointNs },
      );
      procs.push(nse);
      await nse.waitFor((e) => e.event === "ready", 20_000, "endpoint ready");
      const bad = startPeer([
        "endpoint",
        "--listen-on",
        sock("bad-nse"),
        "--name",
        "bad-nse",
        "--service",
        "peer-svc",
        "--fault",
        "bad-signature",
        ...svidFlags(svid["bad-nse"]!),
      ]);
      procs.push(bad);
      await bad.waitFor((e) => e.event === "ready", 20_000, "bad endpoint ready");
      for (const [name, endpoint] of [
        ["nsmgr", sock("nse")],
        ["nsmgr-bad", sock("bad-nse")],
      ] as const) {
        const m = startPeer([
          "nsmgr",
          "--listen-on",
          sock(name),
          "--endpoint",
          endpoint,
          "--name",
          name,
          ...svidFlags(svid.nsmgr!),
        ]);
        procs.push(m);
        await m.waitFor((e) => e.event === "ready", 20_000, `${name} ready`);
      }
    });

    after(async () => {
      for (const p of procs.reverse()) await p.stop();
      net.cleanup();
      dir.remove();
      assert.deepEqual(net.leftovers(), [], "no namespace of this run is left");
    });

    it("Go unit tests pass (fd transceiver, tokens, policies, updatepath)", () => {
      ensurePeer(true); // throws with go test's output on a failure
    });

    it("client → nsmgr → endpoint: path, tokens, namespaces as descriptors, refresh and Close", async () => {
      const nsmgr = procs.find((p) => p.events.some((e) => e.event === "ready" && e.name === "nsmgr"))!;
      const nse = procs[0]!;
      const seen = { nsmgr: nsmgr.events.length, nse: nse.events.length };
      const r = await runPeer(
        [
          "client",
          "--connect-to",
          sock("nsmgr"),
          "--service",
          "peer-svc",
          "--name",
          "nsc",
          "--hold",
          "1500ms",
          "--refresh-every",
          "500ms",
          ...svidFlags(svid.nsc!),
        ],
        { netns: clientNs },
      );
      assert.equal(r.code, 0, JSON.stringify(r.events) + r.stderr);
      const connected = conn(r.events.find((e) => e.event === "connected")!);
      assert.deepEqual(
        connected.path!.path_segments!.map((s) => s.name),
        ["nsc", "nsmgr", "nsmgr-forwarder", "nse"],
      );
      assert.equal(connected.id, "nsc-0");
      assert.deepEqual(pathProblems(connected, [id("nsc"), id("nsmgr"), id("nsmgr"), id("nse")]), []);
      assert.ok(connected.context?.ip_context?.src_ip_addrs?.[0]?.startsWith("169.254.100."));
      const refreshes = r.events.filter((e) => e.event === "refreshed").map(conn);
      assert.ok(refreshes.length >= 1, "refreshed while holding");
      for (const c of refreshes)
        assert.deepEqual(
          c.path!.path_segments!.map((s) => s.id),
          connected.path!.path_segments!.map((s) => s.id),
          "a refresh keeps every hop's id",
        );
      assert.ok(r.events.some((e) => e.event === "closed"));

      // The nsmgr received the client's namespace, the endpoint's namespace came back to it.
      const mgrReq = nsmgr.events.slice(seen.nsmgr).find((e) => e.event === "request")!;
      assert.equal(mgrReq.clientNetnsFdOK, true, JSON.stringify(mgrReq));
      assert.equal((mgrReq.clientFds as { url: string }[])[0]!.url, inodeUrl(net.path(clientNs)));
      assert.equal(mgrReq.endpointNetnsFdOK, true);
      assert.equal((mgrReq.endpointFd as { url: string }).url, inodeUrl(net.path(endpointNs)));
      // The endpoint got the client's namespace passed on by the forwarder and sent its own.
      const nseReq = nse.events.slice(seen.nse).find((e) => e.event === "request")!;
      assert.equal(nseReq.netnsFdOK, true, JSON.stringify(nseReq));
      assert.equal((nseReq.passedFds as { url: string }[])[0]!.url, inodeUrl(net.path(clientNs)));
      assert.equal(nseReq.sentNetns, inodeUrl(net.path(endpointNs)));
      assert.equal(
        conn(nseReq).path!.path_segments!.length,
        4,
        "the endpoint trims nothing before its own segment",
      );
      await nse.waitFor((e) => e.event === "close" && e.known === true, 5000, "the endpoint's Close");
    });

    it("a client that sends inode:// without the descriptor times out in recvfd, as upstream", async () => {
      const nsmgr = procs.find((p) => p.events.some((e) => e.event === "ready" && e.name === "nsmgr"))!;
      const r = await runPeer(
        [
          "client",
          "--connect-to",
          sock("nsmgr"),
          "--service",
          "peer-svc",
          "--name",
          "nsc-nofd",
          "--fault",
          "withhold-fds",
          "--timeout",
          "2s",
          ...svidFlags(svid.nsc!),
        ],
        { netns: clientNs },
      );
      assert.notEqual(r.code, 0);
      assert.equal(r.events.find((e) => e.event === "error")?.code, "DeadlineExceeded");
      const failed = await nsmgr.waitFor(
        (e) => e.event === "request-failed" && e.stage === "recvfd",
        5000,
        "the recvfd failure",
      );
      assert.match(String(failed.message), /^timeout in recvfd waiting for inode:\/\/\d+\/\d+/);
      assert.ok(String(failed.message).includes(inodeUrl(net.path(clientNs))));
    });

    it("a token without aud is refused by the nsmgr (common/tokens_chained → PermissionDenied)", async () => {
      const nsmgr = procs.find((p) => p.events.some((e) => e.event === "ready" && e.name === "nsmgr"))!;
      const r = await runPeer([
        "client",
        "--connect-to",
        sock("nsmgr"),
        "--service",
        "peer-svc",
        "--name",
        "nsc-noaud",
        "--fault",
        "no-aud",
        ...svidFlags(svid.nsc!),
      ]);
      assert.notEqual(r.code, 0);
      const err = r.events.find((e) => e.event === "error")!;
      assert.equal(err.code, "PermissionDenied");
      assert.match(String(err.message), /no sufficient privileges/);
      await nsmgr.waitFor(
        (e) => e.event === "refused" && e.policy === "common/tokens_chained",
        5000,
        "the nsmgr's refusal",
      );
    });

    it("an endpoint token not signed by its SVID: the client refuses the answer (client/next_token_signed)", async () => {
      const r = await runPeer([
        "client",
        "--connect-to",
        sock("bad-nse"),
        "--service",
        "peer-svc",
        "--name",
        "nsc-direct",
        ...svidFlags(svid.nsc!),
      ]);
      assert.notEqual(r.code, 0);
      const err = r.events.find((e) => e.event === "error")!;
      assert.equal(err.code, "PermissionDenied");
      assert.equal(err.policy, "client/next_token_signed");
    });

    it("the same endpoint behind the nsmgr: the forwarder's client refuses it and the caller gets PermissionDenied", async () => {
      const r = await runPeer([
        "client",
        "--connect-to",
        sock("nsmgr-bad"),
        "--service",
        "peer-svc",
        "--name",
        "nsc-via",
        ...svidFlags(svid.nsc!),
      ]);
      assert.notEqual(r.code, 0);
      assert.equal(r.events.find((e) => e.event === "error")?.code, "PermissionDenied");
      const m = procs.find((p) => p.events.some((e) => e.event === "ready" && e.name === "nsmgr-bad"))!;
      await m.waitFor(
        (e) => e.event === "refused" && e.policy === "client/next_token_signed",
        5000,
        "the forwarder's refusal",
      );
    });
  },
);
