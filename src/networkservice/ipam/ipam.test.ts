// ipam element: pairs and routes, refresh, excluded prefixes, exhaustion, recovery after restart, policies,
// close, failed requests, concurrency, IPv6 and dual stack.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import { Connection } from "../../api/connection.js";
import type { DeepPartial, IPContext } from "../../api/connectioncontext.js";
import { NetworkServiceRequest } from "../../api/networkservice.js";
import { chain, type NetworkServiceElement, type NetworkServiceNext } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { point2pointIpam, type IpamOptions } from "./ipam.js";

const log = pino({ level: "silent" });

type PartialIpContext = DeepPartial<IPContext>;

/** One NSE with an ipam element and a tail that can be made slow or failing; per-connection metadata by id. */
class Endpoint {
  readonly chain: NetworkServiceNext;
  readonly metas = new Map<string, ConnectionMetadata>();
  private readonly established = new Set<string>();
  fail = false;
  delayMs = 0;
  closes = 0;

  constructor(cidrs: string[], opts?: IpamOptions) {
    const tail: NetworkServiceElement = {
      name: "tail",
      request: async (req, ctx, next) => {
        if (this.delayMs > 0) await new Promise((r) => setTimeout(r, Math.random() * this.delayMs));
        if (this.fail) throw new StatusError(status.UNAVAILABLE, "downstream failed");
        return next.request(req, ctx);
      },
      close: (conn, ctx, next) => {
        this.closes++;
        return next.close(conn, ctx);
      },
    };
    this.chain = chain([point2pointIpam(cidrs, opts), tail]);
  }

  private ctx(id: string): CallContext {
    const ctx = new CallContext(log, new AbortController().signal);
    let meta = this.metas.get(id);
    if (!meta) this.metas.set(id, (meta = new ConnectionMetadata()));
    ctx.connection = meta;
    return ctx;
  }

  /** A new connection, optionally carrying an IP context (as a client does after an NSE restart). */
  async request(id: string, ipContext?: PartialIpContext): Promise<Connection> {
    const req = NetworkServiceRequest.fromPartial({
      connection: { id, context: ipContext ? { ipContext } : {} },
    });
    return this.send(req);
  }

  /** A refresh: the previous response sent back, as a copy (the wire would copy it too). */
  async refresh(prev: Connection, change?: (ipc: IPContext) => void): Promise<Connection> {
    const conn = Connection.fromPartial(prev);
    if (change) change(conn.context!.ipContext!);
    return this.send(NetworkServiceRequest.fromPartial({ connection: conn }));
  }

  private async send(req: NetworkServiceRequest): Promise<Connection> {
    const id = req.connection!.id;
    try {
      const conn = await this.chain.request(req, this.ctx(id));
      this.established.add(id);
      return conn;
    } catch (err) {
      // begin forgets a connection whose first Request failed.
      if (!this.established.has(id)) this.metas.delete(id);
      throw err;
    }
  }

  async close(conn: Connection): Promise<void> {
    await this.chain.close(conn, this.ctx(conn.id));
    this.metas.delete(conn.id);
    this.established.delete(conn.id);
  }
}

function ipc(conn: Connection): IPContext {
  const ip = conn.context?.ipContext;
  assert.ok(ip, "connection has an ip context");
  return ip;
}

/** The parts of an IP context the tests compare. */
function view(conn: Connection): { src: string[]; dst: string[]; srcRoutes: string[]; dstRoutes: string[] } {
  const ip = ipc(conn);
  return {
    src: ip.srcIpAddrs,
    dst: ip.dstIpAddrs,
    srcRoutes: ip.srcRoutes.map((r) => r.prefix),
    dstRoutes: ip.dstRoutes.map((r) => r.prefix),
  };
}

function pair(src: string, dst: string): ReturnType<typeof view> {
  return { src: [src], dst: [dst], srcRoutes: [dst], dstRoutes: [src] };
}

async function assertRejects(p: Promise<unknown>, code: status, mentions: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(mentions), `"${err.message}" should mention "${mentions}"`);
    return true;
  });
}

describe("point2pointIpam", () => {
  it("gives a connection a /32 pair with host routes to the other side, creating the ip context", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const req = NetworkServiceRequest.fromPartial({ connection: { id: "c1" } });
    assert.equal(req.connection!.context, undefined);
    const ctx = new CallContext(log, new AbortController().signal);
    ctx.connection = new ConnectionMetadata();
    const c1 = await nse.chain.request(req, ctx);
    // NSE (dst) gets the first usable address, the client (src) the next one.
    assert.deepEqual(view(c1), pair("10.0.0.2/32", "10.0.0.1/32"));
    assert.equal(ipc(c1).srcRoutes[0]!.nextHop, "");
    const c2 = await nse.request("c2");
    assert.deepEqual(view(c2), pair("10.0.0.4/32", "10.0.0.3/32"));
  });

  it("keeps the addresses on refresh without duplicating addresses or routes", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const c1 = await nse.request("c1");
    const c2 = await nse.request("c2");
    let r1 = await nse.refresh(c1);
    r1 = await nse.refresh(r1);
    assert.deepEqual(view(r1), view(c1));
    assert.deepEqual(view(await nse.refresh(c2)), view(c2));
    // A client that tries to swap its address on refresh still gets its own pair back.
    const r2 = await nse.refresh(c2, (ip) => {
      ip.srcIpAddrs = ["10.0.0.2/32"];
    });
    assert.deepEqual(view(r2), view(c2));
  });

  it("never hands out an address inside excluded_prefixes", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const c1 = await nse.request("c1", { excludedPrefixes: ["10.0.0.0/30", "10.0.0.5/32"] });
    assert.deepEqual(view(c1), pair("10.0.0.6/32", "10.0.0.4/32"));
    assert.deepEqual(ipc(c1).excludedPrefixes, ["10.0.0.0/30", "10.0.0.5/32"], "excluded list left alone");
    // Another connection without those exclusions may use the skipped addresses.
    const c2 = await nse.request("c2");
    assert.deepEqual(view(c2), pair("10.0.0.2/32", "10.0.0.1/32"));
    // A bare address counts as a host prefix; the whole pool excluded is exhaustion.
    const c3 = await nse.request("c3", { excludedPrefixes: ["10.0.0.3", "10.0.0.5"] });
    assert.deepEqual(view(c3), pair("10.0.0.8/32", "10.0.0.7/32"));
    await assertRejects(
      nse.request("c4", { excludedPrefixes: ["10.0.0.0/16"] }),
      status.RESOURCE_EXHAUSTED,
      "10.0.0.0/24",
    );
  });

  it("replaces a pair that became excluded on refresh, dropping its old routes", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const c1 = await nse.request("c1");
    assert.deepEqual(view(c1), pair("10.0.0.2/32", "10.0.0.1/32"));
    const r1 = await nse.refresh(c1, (ip) => {
      ip.excludedPrefixes = ["10.0.0.2/32"];
    });
    // The pair went back to the pool; the part still allowed (10.0.0.1) may come straight back.
    assert.deepEqual(view(r1), pair("10.0.0.3/32", "10.0.0.1/32"));
    // 10.0.0.2 is excluded only for c1's requests: it is free for others.
    const c2 = await nse.request("c2");
    assert.deepEqual(view(c2), pair("10.0.0.4/32", "10.0.0.2/32"));
  });

  it("rejects an excluded prefix that is not a CIDR", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    await assertRejects(
      nse.request("c1", { excludedPrefixes: ["10.0.0.0/40"] }),
      status.INVALID_ARGUMENT,
      "10.0.0.0/40",
    );
  });

  it("fails with RESOURCE_EXHAUSTED naming the CIDR when the pool is used up, and recovers after a close", async () => {
    const nse = new Endpoint(["10.0.0.0/29"]); // 6 usable addresses → 3 pairs
    const conns = [await nse.request("a"), await nse.request("b"), await nse.request("c")];
    await assertRejects(nse.request("d"), status.RESOURCE_EXHAUSTED, "10.0.0.0/29");
    await assertRejects(nse.request("d"), status.RESOURCE_EXHAUSTED, "10.0.0.0/29");
    await nse.close(conns[1]!);
    assert.deepEqual(view(await nse.request("d")), view(conns[1]!));
  });

  it("gives back the NSE-side address when the pool runs out before the client-side one", async () => {
    const nse = new Endpoint(["10.0.0.0/29"]);
    await nse.request("a");
    await nse.request("b");
    // With 10.0.0.6 excluded only 10.0.0.5 is left: half a pair.
    await assertRejects(
      nse.request("c", { excludedPrefixes: ["10.0.0.6/32"] }),
      status.RESOURCE_EXHAUSTED,
      "10.0.0.0/29",
    );
    assert.deepEqual(view(await nse.request("d")), pair("10.0.0.6/32", "10.0.0.5/32"));
  });

  it("a /31 pool holds exactly one pair (both addresses usable)", async () => {
    const nse = new Endpoint(["192.168.7.0/31"]);
    assert.deepEqual(view(await nse.request("a")), pair("192.168.7.1/32", "192.168.7.0/32"));
    await assertRejects(nse.request("b"), status.RESOURCE_EXHAUSTED, "192.168.7.0/31");
  });

  it("frees the addresses on close and reuses them later; close calls the next element", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const c1 = await nse.request("c1");
    const c2 = await nse.request("c2");
    await nse.close(c1);
    assert.equal(nse.closes, 1);
    const c3 = await nse.request("c3");
    assert.deepEqual(view(c3), view(c1), "freed pair reused");
    const c4 = await nse.request("c4");
    assert.deepEqual(view(c4), pair("10.0.0.6/32", "10.0.0.5/32"));
    assert.notDeepEqual(view(c4), view(c2));
    // Closing an unknown connection is harmless and still reaches the next element.
    await nse.close(Connection.fromPartial({ id: "never-seen" }));
    assert.equal(nse.closes, 2);
  });

  it("frees what it allocated when the rest of the chain fails for a new connection", async () => {
    const nse = new Endpoint(["10.0.0.0/30"]); // one pair only
    nse.fail = true;
    await assertRejects(nse.request("c1"), status.UNAVAILABLE, "downstream failed");
    await assertRejects(nse.request("c1"), status.UNAVAILABLE, "downstream failed");
    nse.fail = false;
    assert.deepEqual(view(await nse.request("c2")), pair("10.0.0.2/32", "10.0.0.1/32"));
  });

  it("keeps an established connection's pair when its refresh fails", async () => {
    const nse = new Endpoint(["10.0.0.0/24"]);
    const c1 = await nse.request("c1");
    nse.fail = true;
    await assertRejects(nse.refresh(c1), status.UNAVAILABLE, "downstream failed");
    nse.fail = false;
    assert.deepEqual(view(await nse.request("c2")), pair("10.0.0.4/32", "10.0.0.3/32"));
    assert.deepEqual(view(await nse.refresh(c1)), view(c1));
  });

  it("recovers the addresses a refreshed connection carries after an NSE restart", async () => {
    const before = new Endpoint(["10.0.0.0/24"]);
    await before.request("c0");
    const c1 = await before.request("c1");
    assert.deepEqual(view(c1), pair("10.0.0.4/32", "10.0.0.3/32"));

    const after = new Endpoint(["10.0.0.0/24"]); // restarted: no state
    const r1 = await after.refresh(c1);
    assert.deepEqual(view(r1), view(c1));
    // The recovered addresses are held: new connections get others.
    const c2 = await after.request("c2");
    assert.deepEqual(view(c2), pair("10.0.0.2/32", "10.0.0.1/32"));
    const c3 = await after.request("c3");
    assert.deepEqual(view(c3), pair("10.0.0.6/32", "10.0.0.5/32"));
    // Recovery is per address: a half-valid context keeps the valid half.
    const c4 = await after.request("c4", { srcIpAddrs: ["10.0.0.20/32"], dstIpAddrs: ["10.0.0.3/32"] });
    assert.deepEqual(view(c4), pair("10.0.0.20/32", "10.0.0.7/32"));
    // An address of the request inside excluded_prefixes is not recovered.
    const c5 = await after.request("c5", {
      srcIpAddrs: ["10.0.0.30/32"],
      dstIpAddrs: ["10.0.0.31/32"],
      excludedPrefixes: ["10.0.0.30/32"],
    });
    assert.deepEqual(view(c5), pair("10.0.0.8/32", "10.0.0.31/32"));
  });

  for (const policy of ["polite", "strict"] as const) {
    it(`${policy}: an in-pool address held by another connection is replaced`, async () => {
      const nse = new Endpoint(["10.0.0.0/24"], { policy });
      const a = await nse.request("a");
      const b = await nse.request("b", {
        srcIpAddrs: ["10.0.0.2/32"],
        dstIpAddrs: ["10.0.0.1/32"],
        srcRoutes: [{ prefix: "10.0.0.1/32" }],
        dstRoutes: [{ prefix: "10.0.0.2/32" }],
      });
      assert.deepEqual(view(a), pair("10.0.0.2/32", "10.0.0.1/32"));
      assert.deepEqual(view(b), pair("10.0.0.4/32", "10.0.0.3/32"));
    });
  }

  it("polite: keeps client addresses and routes from outside the pool, its own pair first", async () => {
    const nse = new Endpoint(["172.16.2.0/29"], { policy: "polite" });
    const c = await nse.request("c", {
      srcIpAddrs: ["172.16.1.1/32"],
      dstIpAddrs: ["172.16.1.0/32"],
      srcRoutes: [{ prefix: "172.16.1.0/32" }, { prefix: "10.20.0.0/16" }, { prefix: "10.20.0.0/16" }],
      dstRoutes: [{ prefix: "172.16.1.1/32" }],
    });
    assert.deepEqual(view(c), {
      src: ["172.16.2.2/32", "172.16.1.1/32"],
      dst: ["172.16.2.1/32", "172.16.1.0/32"],
      srcRoutes: ["172.16.2.1/32", "172.16.1.0/32", "10.20.0.0/16"],
      dstRoutes: ["172.16.2.2/32", "172.16.1.1/32"],
    });
    // Accepted, not allocated: on refresh they stay as they are, and nothing is duplicated.
    assert.deepEqual(view(await nse.refresh(c)), view(c));
  });

  it("strict: drops client addresses from outside the pool and the host routes to them", async () => {
    const nse = new Endpoint(["172.16.2.0/29"], { policy: "strict" });
    const c = await nse.request("c", {
      srcIpAddrs: ["172.16.1.1/32"],
      dstIpAddrs: ["172.16.1.0/32"],
      srcRoutes: [{ prefix: "172.16.1.0/32" }, { prefix: "10.20.0.0/16" }],
      dstRoutes: [{ prefix: "172.16.1.1/32" }],
    });
    assert.deepEqual(view(c), {
      src: ["172.16.2.2/32"],
      dst: ["172.16.2.1/32"],
      srcRoutes: ["172.16.2.1/32", "10.20.0.0/16"],
      dstRoutes: ["172.16.2.2/32"],
    });
  });

  it("strict: recovers in-pool addresses after a restart", async () => {
    const nse = new Endpoint(["172.16.2.0/29"], { policy: "strict" });
    const c = await nse.request("c", { srcIpAddrs: ["172.16.2.6/32"], dstIpAddrs: ["172.16.2.5/32"] });
    assert.deepEqual(view(c), pair("172.16.2.6/32", "172.16.2.5/32"));
  });

  it("gives 500 concurrent connections distinct addresses, and frees them all on concurrent close", async () => {
    const nse = new Endpoint(["10.10.0.0/16"]);
    nse.delayMs = 5;
    const ids = Array.from({ length: 500 }, (_, i) => `conn-${i}`);
    const conns = await Promise.all(ids.map((id) => nse.request(id)));
    const addrs = conns.flatMap((c) => [...ipc(c).srcIpAddrs, ...ipc(c).dstIpAddrs]);
    assert.equal(addrs.length, 1000);
    assert.equal(new Set(addrs).size, 1000, "no address given twice");
    for (const a of addrs) assert.match(a, /^10\.10\.\d+\.\d+\/32$/);
    assert.ok(!addrs.includes("10.10.0.0/32"), "network address never used");
    // Concurrent refreshes keep everything; concurrent closes free everything.
    const refreshed = await Promise.all(conns.map((c) => nse.refresh(c)));
    assert.deepEqual(refreshed.map(view), conns.map(view));
    await Promise.all(conns.map((c) => nse.close(c)));
    const again = await Promise.all(ids.map((id) => nse.request(`${id}-again`)));
    const reused = again.flatMap((c) => [...ipc(c).srcIpAddrs, ...ipc(c).dstIpAddrs]);
    assert.deepEqual(new Set(reused), new Set(addrs), "the freed addresses are the ones reused");
  });

  it("allocates from an IPv6 pool as /128 pairs", async () => {
    const nse = new Endpoint(["fd00:1::/120"]);
    const c1 = await nse.request("c1");
    assert.deepEqual(view(c1), pair("fd00:1::1/128", "fd00:1::/128"));
    const c2 = await nse.request("c2", { excludedPrefixes: ["fd00:1::/126", "10.0.0.0/8"] });
    assert.deepEqual(view(c2), pair("fd00:1::5/128", "fd00:1::4/128"));
    const r1 = await new Endpoint(["fd00:1::/120"]).refresh(c1);
    assert.deepEqual(view(r1), view(c1), "IPv6 recovery");
  });

  it("dual stack: one IPv4 and one IPv6 pair per connection", async () => {
    const nse = new Endpoint(["10.0.0.0/24", "fd00::/64"]);
    const c1 = await nse.request("c1");
    assert.deepEqual(view(c1), {
      src: ["10.0.0.2/32", "fd00::1/128"],
      dst: ["10.0.0.1/32", "fd00::/128"],
      srcRoutes: ["10.0.0.1/32", "fd00::/128"],
      dstRoutes: ["10.0.0.2/32", "fd00::1/128"],
    });
    assert.deepEqual(view(await nse.refresh(c1)), view(c1));
    // Only the IPv4 pair becomes excluded: it is replaced, the IPv6 pair kept, the order stays v4 then v6.
    const r1 = await nse.refresh(c1, (ip) => {
      ip.excludedPrefixes = ["10.0.0.0/30"];
    });
    assert.deepEqual(view(r1), {
      src: ["10.0.0.5/32", "fd00::1/128"],
      dst: ["10.0.0.4/32", "fd00::/128"],
      srcRoutes: ["10.0.0.4/32", "fd00::/128"],
      dstRoutes: ["10.0.0.5/32", "fd00::1/128"],
    });
    // Exhausting one family fails the request and gives back what the other family allocated for it.
    const small = new Endpoint(["10.0.0.0/24", "fd00::/127"]);
    const a = await small.request("a");
    await assertRejects(small.request("b"), status.RESOURCE_EXHAUSTED, "fd00::/127");
    await small.close(a);
    const c = await small.request("c");
    // 10.0.0.3 and .4 were taken for "b" and given back; had they leaked, "c" would get .5 and .6.
    assert.deepEqual(view(c), {
      src: ["10.0.0.4/32", "fd00::1/128"],
      dst: ["10.0.0.3/32", "fd00::/128"],
      srcRoutes: ["10.0.0.3/32", "fd00::/128"],
      dstRoutes: ["10.0.0.4/32", "fd00::1/128"],
    });
  });

  it("throws on an invalid or overlapping CIDR and on an unknown policy", () => {
    assert.throws(() => point2pointIpam(["10.0.0.0/33"]), /10\.0\.0\.0\/33/);
    assert.throws(() => point2pointIpam(["not-a-cidr"]), /not-a-cidr/);
    assert.throws(() => point2pointIpam(["10.0.0.1"]), /10\.0\.0\.1/);
    assert.throws(() => point2pointIpam([]), /at least one CIDR/);
    assert.throws(() => point2pointIpam(["10.0.0.0/16", "10.0.5.0/24"]), /overlap/);
    const bad = { policy: "lenient" } as unknown as IpamOptions;
    assert.throws(() => point2pointIpam(["10.0.0.0/16"], bad), /lenient/);
    assert.equal(point2pointIpam(["10.0.0.0/16"]).name, "ipam");
  });
});
