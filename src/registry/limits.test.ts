// Bounded registry state: live registrations per identity and in all, and Find-watch streams per identity.
// The identity is callerId(ctx): here (insecure mode) the `sub` of the caller's token.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import {
  NetworkServiceEndpointRegistryService,
  type NetworkServiceEndpointResponse,
} from "../api/registry.js";
import { GrpcClient, collect, type ServerStream } from "../core/client.js";
import { CallContext } from "../core/context.js";
import { NsmServer } from "../core/grpc.js";
import { rootLogger } from "../core/log.js";
import { registryChain } from "../core/registrychain.js";
import { tokenKey } from "../security/token.js";
import { endpoint, service } from "./client.js";
import {
  EndpointTable,
  ServiceTable,
  defaultMaxRegistrationsPerIdentity,
  memoryNSEServer,
  memoryNSServer,
} from "./memory.js";
import { nseRegistryService } from "./server.js";
import { MemoryStore } from "./store/store.js";

/** An unsigned token claiming `sub`: what identifies a caller without TLS. */
function tokenOf(sub: string): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "ES256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}.c2ln`;
}

function metadataOf(sub: string): Metadata {
  const md = new Metadata();
  md.set(tokenKey, tokenOf(sub));
  return md;
}

const ctxOf = (sub: string): CallContext =>
  new CallContext(rootLogger, new AbortController().signal, metadataOf(sub));

const codeOf = (e: unknown): status | undefined => (e as { code?: status }).code;

describe("registry registration limits", () => {
  it("10,000 NSEs from one identity: the first 1,000 are kept, the rest refused; others still register", async () => {
    const table = new EndpointTable(new MemoryStore(), rootLogger);
    const chain = registryChain([memoryNSEServer(table)]);
    const a = "spiffe://test/flooder";
    let ok = 0;
    let exhausted = 0;
    let message = "";
    for (let i = 0; i < 10_000; i++) {
      try {
        await chain.register(endpoint({ name: `nse-${i}`, networkServiceNames: ["s"] }), ctxOf(a));
        ok++;
      } catch (e) {
        assert.equal(codeOf(e), status.RESOURCE_EXHAUSTED);
        message = (e as Error).message;
        exhausted++;
      }
    }
    assert.equal(ok, defaultMaxRegistrationsPerIdentity);
    assert.equal(exhausted, 10_000 - defaultMaxRegistrationsPerIdentity);
    assert.match(message, /spiffe:\/\/test\/flooder has 1000 live NetworkServiceEndpoint registrations/);
    assert.match(message, /limit per identity is 1000 \(RegistrationLimits\.maxPerIdentity\)/);
    assert.equal(table.size, defaultMaxRegistrationsPerIdentity, "only the accepted ones are stored");
    assert.equal(table.get("nse-1000"), undefined);
    assert.equal(table.ownedBy(a), defaultMaxRegistrationsPerIdentity);

    // Refreshing a registration it holds is not a new one.
    await chain.register(endpoint({ name: "nse-0", networkServiceNames: ["s"] }), ctxOf(a));
    // Another identity is not affected.
    await chain.register(endpoint({ name: "other-0" }), ctxOf("spiffe://test/other"));
    assert.equal(table.size, defaultMaxRegistrationsPerIdentity + 1);
    // An unregistered (or expired) registration frees its slot.
    await chain.unregister(endpoint({ name: "nse-0" }), ctxOf(a));
    await chain.register(endpoint({ name: "nse-new" }), ctxOf(a));
    await assert.rejects(
      chain.register(endpoint({ name: "nse-newer" }), ctxOf(a)),
      /RESOURCE_EXHAUSTED|limit/,
    );
    table.close();
  });

  it("the table is bounded in all, whoever registers", async () => {
    const table = new EndpointTable(new MemoryStore(), rootLogger, { maxPerIdentity: 10, maxTotal: 15 });
    const chain = registryChain([memoryNSEServer(table)]);
    for (let i = 0; i < 10; i++) await chain.register(endpoint({ name: `a-${i}` }), ctxOf("spiffe://t/a"));
    for (let i = 0; i < 5; i++) await chain.register(endpoint({ name: `b-${i}` }), ctxOf("spiffe://t/b"));
    await assert.rejects(
      chain.register(endpoint({ name: "c-0" }), ctxOf("spiffe://t/c")),
      (e) =>
        codeOf(e) === status.RESOURCE_EXHAUSTED &&
        /limit is 15 \(RegistrationLimits\.maxTotal\)/.test(String(e)),
    );
    // A registration the table holds can still be refreshed.
    await chain.register(endpoint({ name: "b-0", url: "tcp://127.0.0.1:1" }), ctxOf("spiffe://t/b"));
    assert.equal(table.size, 15);
    table.close();
  });

  it("an exempt identity (a proxy registering for others) is not limited per identity", async () => {
    const nsmgr = "spiffe://test/nsmgr";
    const table = new EndpointTable(new MemoryStore(), rootLogger, {
      maxPerIdentity: 2,
      exempt: (id) => id === nsmgr,
    });
    const chain = registryChain([memoryNSEServer(table)]);
    for (let i = 0; i < 5; i++) await chain.register(endpoint({ name: `via-nsmgr-${i}` }), ctxOf(nsmgr));
    assert.equal(table.size, 5);
    assert.equal(table.ownedBy(nsmgr), 0);
    await chain.unregister(endpoint({ name: "via-nsmgr-0" }), ctxOf(nsmgr));
    for (let i = 0; i < 2; i++)
      await chain.register(endpoint({ name: `direct-${i}` }), ctxOf("spiffe://t/x"));
    await assert.rejects(
      chain.register(endpoint({ name: "direct-2" }), ctxOf("spiffe://t/x")),
      /limit per identity is 2/,
    );
    table.close();
  });

  it("NetworkServices are limited per identity too; in-process writes (replica) are not", async () => {
    const table = new ServiceTable(new MemoryStore(), { maxPerIdentity: 3 });
    const chain = registryChain([memoryNSServer(table)]);
    for (let i = 0; i < 3; i++) await chain.register(service({ name: `s-${i}` }), ctxOf("spiffe://t/a"));
    await assert.rejects(
      chain.register(service({ name: "s-3" }), ctxOf("spiffe://t/a")),
      (e) => codeOf(e) === status.RESOURCE_EXHAUSTED && /NetworkService registrations/.test(String(e)),
    );
    await table.put(service({ name: "mirrored" }));
    await chain.register(service({ name: "s-x" }), CallContext.background(rootLogger));
    assert.equal(table.size, 5);
  });
});

describe("registry Find-watch limit", () => {
  let server: NsmServer;
  let client: GrpcClient;
  const table = new EndpointTable(new MemoryStore(), rootLogger);
  const streams: ServerStream<NetworkServiceEndpointResponse>[] = [];

  before(async () => {
    server = new NsmServer([
      nseRegistryService(registryChain([memoryNSEServer(table)]), rootLogger, { maxWatchesPerIdentity: 3 }),
    ]);
    client = new GrpcClient(await server.listen("tcp://127.0.0.1:0"));
  });
  after(async () => {
    for (const s of streams) s.cancel();
    client.close();
    await server.stop(0);
    table.close();
  });

  const watch = (sub: string): ServerStream<NetworkServiceEndpointResponse> => {
    const s = client.serverStream(
      NetworkServiceEndpointRegistryService.find,
      { networkServiceEndpoint: endpoint({}), watch: true },
      { metadata: metadataOf(sub) },
    );
    streams.push(s);
    return s;
  };

  /** Resolves when the stream is open (headers), rejects with its status if it is refused. */
  const opened = async (s: ServerStream<NetworkServiceEndpointResponse>): Promise<void> => {
    const it = s[Symbol.asyncIterator]();
    const first = it.next();
    const outcome = await Promise.race([
      first.then(() => "event"),
      new Promise<string>((r) => setTimeout(() => r("open"), 300)),
    ]);
    if (outcome === "event") await first;
  };

  it("an identity's 4th concurrent watch gets RESOURCE_EXHAUSTED; others and non-watch Finds are served", async () => {
    const a = "spiffe://test/watcher";
    const mine = [watch(a), watch(a), watch(a)];
    for (const s of mine) await opened(s);
    await assert.rejects(
      opened(watch(a)),
      (e) =>
        codeOf(e) === status.RESOURCE_EXHAUSTED &&
        /open registry Find watches: the limit per identity is 3 \(maxWatchesPerIdentity\)/.test(String(e)),
    );
    await opened(watch("spiffe://test/someone-else"));
    const once = await collect(
      client.serverStream(
        NetworkServiceEndpointRegistryService.find,
        { networkServiceEndpoint: endpoint({}), watch: false },
        { metadata: metadataOf(a), timeoutMs: 5000 },
      ),
    );
    assert.deepEqual(once, [], "a Find without watch needs no slot");
    // A finished watch gives its slot back.
    mine[0]!.cancel();
    await new Promise((r) => setTimeout(r, 100));
    await opened(watch(a));
  });
});
