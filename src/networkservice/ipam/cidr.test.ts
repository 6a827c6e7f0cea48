// CIDR math: parsing, formatting (RFC 5952 for IPv6), containment, overlap and n-th address, as tables.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  canonicalCidr,
  contains,
  firstAddr,
  formatCidr,
  formatIp,
  lastAddr,
  networkOf,
  nth,
  overlaps,
  parseCidr,
  parseIp,
  size,
  tryParseCidr,
  tryParseCidrOrIp,
  tryParseIp,
} from "./cidr.js";

describe("parseIp / formatIp", () => {
  const roundTrips: Array<[string, 4 | 6, bigint, string]> = [
    ["0.0.0.0", 4, 0n, "0.0.0.0"],
    ["192.0.2.1", 4, 0xc0000201n, "192.0.2.1"],
    ["255.255.255.255", 4, 0xffffffffn, "255.255.255.255"],
    ["::", 6, 0n, "::"],
    ["::1", 6, 1n, "::1"],
    ["1::", 6, 1n << 112n, "1::"],
    ["2001:DB8::1", 6, 0x20010db8000000000000000000000001n, "2001:db8::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", 6, 0x20010db8000000000000000000000001n, "2001:db8::1"],
    // RFC 5952: a single zero group is not compressed; the longest run wins; the first run wins a tie.
    ["2001:db8:0:1:1:1:1:1", 6, 0x20010db8000000010001000100010001n, "2001:db8:0:1:1:1:1:1"],
    ["2001:0:0:1:0:0:0:1", 6, 0x20010000000000010000000000000001n, "2001:0:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", 6, 0x20010db8000000000001000000000001n, "2001:db8::1:0:0:1"],
    ["::ffff:192.0.2.1", 6, 0xffffc0000201n, "::ffff:c000:201"],
    ["1:2:3:4:5:6:7::", 6, 0x00010002000300040005000600070000n, "1:2:3:4:5:6:7:0"],
    ["fe80::", 6, 0xfe80n << 112n, "fe80::"],
  ];
  for (const [text, family, value, formatted] of roundTrips) {
    it(`${text} → ${formatted}`, () => {
      const ip = parseIp(text);
      assert.deepEqual(ip, { family, value });
      assert.equal(formatIp(ip), formatted);
    });
  }

  const invalid = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "01.2.3.4",
    "1.2.3.-4",
    "a.b.c.d",
    ":::",
    "1::2::3",
    "12345::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    ":1:2:3:4:5:6:7",
    "fe80::1%eth0",
    "::1.2.3.4.5",
    "1.2.3.4::",
    "g::1",
  ];
  for (const text of invalid) {
    it(`rejects "${text}"`, () => {
      assert.equal(tryParseIp(text), undefined);
      assert.throws(() => parseIp(text), new RegExp(`"${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"`));
    });
  }
});

describe("parseCidr", () => {
  const valid: Array<[string, string, string, bigint]> = [
    // text, network, as stored, size
    ["10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/8", 1n << 24n],
    ["10.1.2.3/24", "10.1.2.0/24", "10.1.2.3/24", 256n],
    ["0.0.0.0/0", "0.0.0.0/0", "0.0.0.0/0", 1n << 32n],
    ["192.0.2.7/32", "192.0.2.7/32", "192.0.2.7/32", 1n],
    ["2001:db8::1/64", "2001:db8::/64", "2001:db8::1/64", 1n << 64n],
    ["::/0", "::/0", "::/0", 1n << 128n],
    ["2001:db8::5/128", "2001:db8::5/128", "2001:db8::5/128", 1n],
  ];
  for (const [text, network, stored, n] of valid) {
    it(`${text}`, () => {
      const c = parseCidr(text);
      assert.equal(formatCidr(c), stored);
      assert.equal(formatCidr(networkOf(c)), network);
      assert.equal(size(c), n);
      assert.equal(lastAddr(c) - firstAddr(c) + 1n, n);
    });
  }

  for (const text of [
    "10.0.0.0",
    "10.0.0.0/33",
    "10.0.0.0/-1",
    "10.0.0.0/08",
    "10.0.0.0/",
    "::/129",
    "x/8",
    "/8",
  ]) {
    it(`rejects "${text}"`, () => {
      assert.equal(tryParseCidr(text), undefined);
      assert.throws(
        () => parseCidr(text),
        (err: unknown) => err instanceof Error && err.message.includes(text),
      );
    });
  }

  it("tryParseCidrOrIp reads a bare address as a host prefix", () => {
    assert.equal(formatCidr(tryParseCidrOrIp("10.0.0.1")!), "10.0.0.1/32");
    assert.equal(formatCidr(tryParseCidrOrIp("2001:db8::1")!), "2001:db8::1/128");
    assert.equal(formatCidr(tryParseCidrOrIp("10.0.0.0/8")!), "10.0.0.0/8");
    assert.equal(tryParseCidrOrIp("nope"), undefined);
    assert.equal(canonicalCidr("2001:DB8:0::1"), "2001:db8::1/128");
  });
});

describe("contains / overlaps", () => {
  const containsTable: Array<[string, string, boolean]> = [
    ["10.0.0.0/8", "10.255.255.255", true],
    ["10.0.0.0/8", "11.0.0.0", false],
    ["10.0.0.0/8", "9.255.255.255", false],
    ["10.0.0.0/8", "10.1.0.0/16", true],
    ["10.1.0.0/16", "10.0.0.0/8", false],
    ["10.0.0.0/8", "10.0.0.0/8", true],
    ["0.0.0.0/0", "1.2.3.4", true],
    ["192.0.2.1/32", "192.0.2.1", true],
    ["192.0.2.1/32", "192.0.2.2", false],
    ["2001:db8::/32", "2001:db8:ffff::1", true],
    ["2001:db8::/32", "2001:db9::", false],
    // Families never mix, even where the integers would.
    ["::/0", "10.0.0.1", false],
    ["0.0.0.0/0", "::1", false],
  ];
  for (const [cidr, x, want] of containsTable) {
    it(`${cidr} ∋ ${x} = ${want}`, () => {
      const target = x.includes("/") ? parseCidr(x) : parseIp(x);
      assert.equal(contains(parseCidr(cidr), target), want);
    });
  }

  const overlapTable: Array<[string, string, boolean]> = [
    ["10.0.0.0/24", "10.0.0.128/25", true],
    ["10.0.0.0/25", "10.0.0.128/25", false],
    ["10.0.0.0/8", "10.200.0.0/16", true],
    ["10.0.0.255/32", "10.0.0.0/24", true],
    ["10.0.1.0/32", "10.0.0.0/24", false],
    ["2001:db8::/64", "2001:db8::8000:0:0:0/65", true],
    ["2001:db8::/64", "2001:db8:0:1::/64", false],
    ["::/0", "0.0.0.0/0", false],
  ];
  for (const [a, b, want] of overlapTable) {
    it(`${a} ∩ ${b} = ${want}`, () => {
      assert.equal(overlaps(parseCidr(a), parseCidr(b)), want);
      assert.equal(overlaps(parseCidr(b), parseCidr(a)), want);
    });
  }
});

describe("nth", () => {
  const table: Array<[string, bigint, string]> = [
    ["10.0.0.0/24", 0n, "10.0.0.0"],
    ["10.0.0.77/24", 1n, "10.0.0.1"],
    ["10.0.0.0/24", 255n, "10.0.0.255"],
    ["10.0.255.0/16", 256n, "10.0.1.0"],
    ["2001:db8::/64", 0xffffn, "2001:db8::ffff"],
    ["2001:db8::/64", (1n << 64n) - 1n, "2001:db8::ffff:ffff:ffff:ffff"],
  ];
  for (const [cidr, n, want] of table) {
    it(`${cidr} #${n} = ${want}`, () => assert.equal(formatIp(nth(parseCidr(cidr), n)), want));
  }

  it("throws outside the prefix", () => {
    assert.throws(() => nth(parseCidr("10.0.0.0/24"), 256n), RangeError);
    assert.throws(() => nth(parseCidr("10.0.0.0/24"), -1n), RangeError);
  });
});
