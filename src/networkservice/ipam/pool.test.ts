// AddressPool: order of allocation, reuse of freed addresses, excluded ranges kept for other requests,
// recovery of specific addresses, and a randomised comparison against a brute-force model.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIp, parseCidr, parseIp, type Cidr } from "./cidr.js";
import { AddressPool } from "./pool.js";

const v4 = (text: string): bigint => parseIp(text).value;
const show = (pool: AddressPool, v: bigint | undefined): string | undefined =>
  v === undefined ? undefined : formatIp({ family: pool.cidr.family, value: v });
const ex = (...list: string[]): Cidr[] => list.map(parseCidr);

function drain(pool: AddressPool, excluded: Cidr[] = [], max = 1_000_000): string[] {
  const out: string[] = [];
  for (let v = pool.allocate(excluded); v !== undefined && out.length < max; v = pool.allocate(excluded)) {
    out.push(show(pool, v)!);
  }
  return out;
}

describe("AddressPool", () => {
  it("skips the IPv4 network and broadcast addresses below /31", () => {
    assert.deepEqual(drain(new AddressPool(parseCidr("10.0.0.0/29"))), [
      "10.0.0.1",
      "10.0.0.2",
      "10.0.0.3",
      "10.0.0.4",
      "10.0.0.5",
      "10.0.0.6",
    ]);
    assert.deepEqual(drain(new AddressPool(parseCidr("10.0.0.7/31"))), ["10.0.0.6", "10.0.0.7"]);
    assert.deepEqual(drain(new AddressPool(parseCidr("10.0.0.7/32"))), ["10.0.0.7"]);
  });

  it("uses every address of an IPv6 prefix", () => {
    assert.deepEqual(drain(new AddressPool(parseCidr("fd00::/126"))), [
      "fd00::",
      "fd00::1",
      "fd00::2",
      "fd00::3",
    ]);
  });

  it("reuses freed addresses, oldest first, before new ones", () => {
    const pool = new AddressPool(parseCidr("10.0.0.0/24"));
    const a = pool.allocate([])!;
    const b = pool.allocate([])!;
    pool.allocate([]);
    pool.release(b);
    pool.release(a);
    assert.equal(show(pool, pool.allocate([])), "10.0.0.2");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.1");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.4");
    pool.release(a);
    pool.release(a); // double free is harmless
    assert.equal(show(pool, pool.allocate([])), "10.0.0.1");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.5");
  });

  it("jumps over an excluded range and keeps it for requests that do not exclude it", () => {
    const pool = new AddressPool(parseCidr("10.0.0.0/24"));
    assert.equal(show(pool, pool.allocate(ex("10.0.0.0/26"))), "10.0.0.64");
    assert.equal(show(pool, pool.allocate(ex("10.0.0.0/26"))), "10.0.0.65");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.1");
    assert.equal(show(pool, pool.allocate(ex("10.0.0.0/31"))), "10.0.0.2");
    assert.equal(show(pool, pool.allocate(ex("10.0.0.3/32"))), "10.0.0.4");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.3");
    // A freed address is not handed to a request that excludes it, but stays for the next one.
    pool.release(v4("10.0.0.2"));
    assert.equal(show(pool, pool.allocate(ex("10.0.0.2/32"))), "10.0.0.5");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.2");
    // Excluding the whole pool exhausts it for that request only.
    assert.equal(pool.allocate(ex("0.0.0.0/0")), undefined);
    assert.equal(show(pool, pool.allocate([])), "10.0.0.6");
  });

  it("take() claims a specific free address; the cursor and the free list then skip it", () => {
    const pool = new AddressPool(parseCidr("10.0.0.0/24"));
    const ip = (t: string) => parseIp(t);
    assert.equal(pool.take(ip("10.0.0.2"), []), true);
    assert.equal(pool.take(ip("10.0.0.2"), []), false, "already held");
    assert.equal(pool.take(ip("10.0.0.0"), []), false, "network address");
    assert.equal(pool.take(ip("10.0.0.255"), []), false, "broadcast address");
    assert.equal(pool.take(ip("10.0.1.1"), []), false, "outside");
    assert.equal(pool.take(ip("fd00::1"), []), false, "other family");
    assert.equal(pool.take(ip("10.0.0.9"), ex("10.0.0.8/29")), false, "excluded");
    assert.deepEqual(
      [pool.allocate([]), pool.allocate([])].map((v) => show(pool, v)),
      ["10.0.0.1", "10.0.0.3"],
    );
    pool.release(v4("10.0.0.1"));
    assert.equal(pool.take(ip("10.0.0.1"), []), true, "freed address taken back");
    assert.equal(show(pool, pool.allocate([])), "10.0.0.4", "stale free-list entry skipped");
    assert.equal(pool.inUse, 4);
  });

  it("allocates a whole /16 in linear time, with an excluded range in front of the cursor", () => {
    const pool = new AddressPool(parseCidr("10.1.0.0/16"));
    const excluded = ex("10.1.0.0/17", "10.1.200.0/24", "192.168.0.0/16");
    const start = performance.now();
    const got = drain(pool, excluded);
    const elapsed = performance.now() - start;
    assert.equal(got.length, 32768 - 256 - 1, "upper half minus the excluded /24 and broadcast");
    assert.equal(new Set(got).size, got.length);
    // The excluded half is still there for other requests.
    assert.equal(drain(pool).length, 32767 + 256);
    assert.ok(elapsed < 3000, `took ${elapsed.toFixed(0)} ms`);
  });

  it("never hands out a held or excluded address and only reports exhaustion when nothing is left", () => {
    // Random operations against a brute-force model over a /27 (30 usable addresses). Many short episodes on
    // fresh pools, so the cursor, the gaps and the free list are all exercised while they are still in use.
    let seed = 12345;
    const rand = (n: number): number => {
      // xorshift32: deterministic, so a failure names a reproducible step.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const exclusions = [
      [],
      ex("10.0.0.0/29"),
      ex("10.0.0.8/30", "10.0.0.20/31"),
      ex("10.0.0.16/28"),
      ex("10.0.0.0/29", "10.0.0.8/30"), // adjacent: the cursor jumps twice in a row
    ];
    for (let episode = 0; episode < 400; episode++) {
      const pool = new AddressPool(parseCidr("10.0.0.0/27"));
      const held = new Set<bigint>();
      for (let step = 0; step < 120; step++) {
        const where = `episode ${episode} step ${step}`;
        const op = rand(10);
        const excluded = exclusions[rand(exclusions.length)]!;
        const isExcluded = (v: bigint): boolean =>
          excluded.some((e) => v >= e.value && v < e.value + (1n << BigInt(32 - e.bits)));
        if (op < 5) {
          const v = pool.allocate(excluded);
          if (v === undefined) {
            for (let a = pool.first; a <= pool.last; a++) {
              assert.ok(held.has(a) || isExcluded(a), `${where}: ${show(pool, a)} was free`);
            }
          } else {
            assert.ok(!held.has(v), `${where}: ${show(pool, v)} handed out twice`);
            assert.ok(!isExcluded(v), `${where}: ${show(pool, v)} is excluded`);
            assert.ok(v >= v4("10.0.0.1") && v <= v4("10.0.0.30"), `${where}: ${show(pool, v)} outside`);
            held.add(v);
          }
        } else if (op < 7 && held.size > 0) {
          const v = [...held][rand(held.size)]!;
          pool.release(v);
          held.delete(v);
        } else {
          const v = v4("10.0.0.0") + BigInt(rand(32));
          const want = v >= pool.first && v <= pool.last && !held.has(v) && !isExcluded(v);
          assert.equal(pool.take({ family: 4, value: v }, excluded), want, `${where}: take ${show(pool, v)}`);
          if (want) held.add(v);
        }
        assert.equal(pool.inUse, held.size);
      }
      // Nothing was lost: drained without exclusions, the pool gives exactly the addresses not held.
      for (let v = pool.allocate([]); v !== undefined; v = pool.allocate([])) {
        assert.ok(!held.has(v), `episode ${episode} drain: ${show(pool, v)} handed out twice`);
        held.add(v);
      }
      assert.equal(held.size, 30, `episode ${episode}: ${30 - held.size} addresses lost`);
    }
  });
});
