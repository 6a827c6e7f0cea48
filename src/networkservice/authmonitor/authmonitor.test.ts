// authmonitor: over MonitorConnections each caller sees only the connections it requested through the hop, in
// the initial snapshot and in later events; a caller without an identity is refused; each identity may hold
// only so many streams. Insecure mode (identity = the token's `sub`) over gRPC, and mTLS (the certificate's
// SPIFFE ID, whatever a token claims) on the store directly.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import {
  ConnectionEventType,
  MonitorConnectionService,
  type ConnectionEvent,
  type MonitorScopeSelector,
} from "../../api/connection.js";
import { chain, type NetworkServiceNext } from "../../core/chain.js";
import { GrpcClient, type ServerStream } from "../../core/client.js";
import { CallContext } from "../../core/context.js";
import { NsmServer } from "../../core/grpc.js";
import { rootLogger } from "../../core/log.js";
import { TrustDomainCa } from "../../security/ca.js";
import { tokenKey } from "../../security/token.js";
import { beginServer } from "../begin/begin.js";
import { MonitorStore, monitorConnectionService, monitorServer } from "../monitor/monitor.js";
import { authMonitor } from "./authmonitor.js";
import { emptyConnection } from "../updatepath/updatepath.js";

const alice = "spiffe://test/alice";
const bob = "spiffe://test/bob";

/** An unsigned token claiming `sub`: who a caller is on an insecure link. */
function tokenOf(sub: string): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "ES256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}.c2ln`;
}

function metadataOf(sub: string | undefined): Metadata {
  const md = new Metadata();
  if (sub) md.set(tokenKey, tokenOf(sub));
  return md;
}

const ctxOf = (sub: string): CallContext =>
  new CallContext(rootLogger, new AbortController().signal, metadataOf(sub));

const everything: MonitorScopeSelector = { pathSegments: [], networkServices: [] };

/** Collects a stream's events as they come. */
function events(stream: ServerStream<ConnectionEvent>): { seen: ConnectionEvent[]; ended: Promise<unknown> } {
  const seen: ConnectionEvent[] = [];
  const ended = (async () => {
    for await (const ev of stream) seen.push(ev);
  })().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { seen, ended };
}

const ids = (ev: ConnectionEvent | undefined): string[] => Object.keys(ev?.connections ?? {}).sort();

async function until(what: string, cond: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 5000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("authmonitor over MonitorConnections", () => {
  const store = new MonitorStore();
  const hop: NetworkServiceNext = chain([beginServer(rootLogger), monitorServer(store)]);
  let server: NsmServer;
  let client: GrpcClient;
  const streams: ServerStream<ConnectionEvent>[] = [];

  const request = (id: string, sub: string) =>
    hop.request(
      { connection: { ...emptyConnection(), id, networkService: "svc" }, mechanismPreferences: [] },
      ctxOf(sub),
    );
  const watch = (sub: string | undefined, sel = everything): ServerStream<ConnectionEvent> => {
    const s = client.serverStream(MonitorConnectionService.monitorConnections, sel, {
      metadata: metadataOf(sub),
    });
    streams.push(s);
    return s;
  };

  before(async () => {
    server = new NsmServer([monitorConnectionService(store, rootLogger, { maxStreamsPerIdentity: 3 })]);
    client = new GrpcClient(await server.listen("tcp://127.0.0.1:0"));
    await request("a1", alice);
    await request("b1", bob);
  });
  after(async () => {
    for (const s of streams) s.cancel();
    client.close();
    await server.stop(0);
  });

  it("two identities each see only their own connections, in the snapshot and in later events", async () => {
    const a = events(watch(alice));
    const b = events(watch(bob));
    await until("both snapshots", () => a.seen.length > 0 && b.seen.length > 0);
    assert.equal(a.seen[0]!.type, ConnectionEventType.INITIAL_STATE_TRANSFER);
    assert.deepEqual(ids(a.seen[0]), ["a1"]);
    assert.deepEqual(ids(b.seen[0]), ["b1"]);

    await request("b2", bob);
    await request("a2", alice);
    await hop.close({ ...emptyConnection(), id: "b1" }, ctxOf(bob));
    await until("alice's a2", () => a.seen.length >= 2);
    await until("bob's b2 and b1's delete", () => b.seen.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      a.seen.slice(1).map((e) => [e.type, ids(e)]),
      [[ConnectionEventType.UPDATE, ["a2"]]],
      "alice hears nothing of bob's connections",
    );
    assert.deepEqual(
      b.seen.slice(1).map((e) => [e.type, ids(e)]),
      [
        [ConnectionEventType.UPDATE, ["b2"]],
        [ConnectionEventType.DELETE, ["b1"]],
      ],
    );
  });

  it("a selector naming someone else's connection yields nothing of it", async () => {
    const sel: MonitorScopeSelector = {
      pathSegments: [{ name: "", id: "b2", token: "", expires: undefined, metrics: {} }],
      networkServices: [],
    };
    const s = events(watch(alice, sel));
    await until("snapshot", () => s.seen.length > 0);
    assert.deepEqual(ids(s.seen[0]), []);
  });

  it("a caller without an identity gets PERMISSION_DENIED", async () => {
    const s = events(watch(undefined));
    const err = await s.ended;
    assert.equal((err as { code?: status }).code, status.PERMISSION_DENIED);
    assert.match(String(err), /no identity/);
  });

  it("an identity's streams are capped: past the limit RESOURCE_EXHAUSTED, others unaffected", async () => {
    const carol = "spiffe://test/carol";
    const open = [events(watch(carol)), events(watch(carol)), events(watch(carol))];
    await until("carol's three snapshots", () => open.every((o) => o.seen.length > 0));
    const fourth = events(watch(carol));
    const err = await fourth.ended;
    assert.equal((err as { code?: status }).code, status.RESOURCE_EXHAUSTED);
    assert.match(String(err), /open MonitorConnections streams: the limit per identity is 3/);
    const dave = events(watch("spiffe://test/dave"));
    await until("dave's snapshot", () => dave.seen.length > 0);
  });
});

describe("authmonitor identity", () => {
  it("under mTLS the certificate's SPIFFE ID decides, not a token's claim; seeAll and no filter show all", async () => {
    const ca = await TrustDomainCa.create("test");
    const bobCert = new X509Certificate((await ca.issue(bob)).certificatePem!).raw;
    const store = new MonitorStore();
    const hop = chain([beginServer(rootLogger), monitorServer(store)]);
    const asBob = (): CallContext => {
      // A token claiming alice rides along: the certificate wins.
      const c = ctxOf(alice);
      c.peerCertificate = bobCert;
      return c;
    };
    await hop.request(
      { connection: { ...emptyConnection(), id: "x", networkService: "svc" }, mechanismPreferences: [] },
      asBob(),
    );
    await hop.request(
      { connection: { ...emptyConnection(), id: "y", networkService: "svc" }, mechanismPreferences: [] },
      ctxOf(alice),
    );
    assert.equal(store.ownerOf("x"), bob);
    assert.equal(store.ownerOf("y"), alice);

    const seen = (ctx: CallContext, authorize: boolean): string[] => {
      const abort = new AbortController();
      let first: ConnectionEvent | undefined;
      const sink = { send: (ev: ConnectionEvent | Uint8Array) => void (first ??= ev as ConnectionEvent) };
      void store.subscribe(everything, sink, abort.signal, authorize ? authMonitor(ctx) : undefined);
      abort.abort();
      return ids(first);
    };
    assert.deepEqual(seen(asBob(), true), ["x"]);
    assert.deepEqual(seen(ctxOf(alice), true), ["y"]);
    assert.deepEqual(seen(ctxOf(alice), false), ["x", "y"]);
    const admin = authMonitor(ctxOf("spiffe://test/operator"), ["spiffe://test/operator"]);
    assert.ok(admin(store.get("x")!, store.ownerOf("x")) && admin(store.get("y")!, store.ownerOf("y")));
  });
});
