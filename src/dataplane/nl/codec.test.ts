// Pure tests of the message layer's codecs and IFLA_LINKINFO encoding (no kernel needed).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIp, formatMac, linkNameProblem, maskBytes, parseCidr, parseIp, parseMac } from "./codec.js";
import { decodeLinkInfo, vxlanLinkInfo } from "./linkinfo.js";

describe("dataplane codecs", () => {
  it("parses and formats IPv4", () => {
    const p = parseIp("198.18.0.1");
    assert.deepEqual(p && [p.family, [...p.bytes], p.text], [4, [198, 18, 0, 1], "198.18.0.1"]);
    assert.equal(parseIp("198.18.0.256"), undefined);
    assert.equal(parseIp("nope"), undefined);
  });

  it("parses IPv6 and formats it RFC 5952-compressed", () => {
    const cases: [string, string][] = [
      ["fd00::1", "fd00::1"],
      ["FD00:0:0:0:0:0:0:1", "fd00::1"],
      ["::", "::"],
      ["::1", "::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8::", "2001:db8::"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["::ffff:198.18.0.1", "::ffff:c612:1"],
      ["fe80::1%eth0", "fe80::1"],
    ];
    for (const [input, want] of cases) {
      const p = parseIp(input);
      assert.ok(p, input);
      assert.equal(p.family, 6);
      assert.equal(p.bytes.length, 16);
      assert.equal(p.text, want, input);
      assert.equal(formatIp(p.bytes), want);
    }
    assert.equal(parseIp("1::2::3"), undefined);
    assert.equal(parseIp("12345::"), undefined);
  });

  it("parses prefixes and masks host bits", () => {
    assert.deepEqual(
      (({ family, prefixLen, text }) => ({ family, prefixLen, text }))(parseCidr("169.254.0.1/30")!),
      { family: 4, prefixLen: 30, text: "169.254.0.1" },
    );
    assert.equal(parseCidr("169.254.0.1")?.prefixLen, 32);
    assert.equal(parseCidr("fd00::1")?.prefixLen, 128);
    assert.equal(parseCidr("10.0.0.0/33"), undefined);
    assert.equal(parseCidr("10.0.0.0/x"), undefined);
    assert.equal(formatIp(maskBytes(parseIp("203.0.113.77")!.bytes, 24)), "203.0.113.0");
    assert.equal(formatIp(maskBytes(parseIp("fd00::ffff")!.bytes, 120)), "fd00::ff00");
  });

  it("parses and formats MAC addresses", () => {
    assert.equal(formatMac(parseMac("02:AB:0:1:2:ff")!), "02:ab:00:01:02:ff");
    assert.equal(parseMac("02:ab:00:01:02"), undefined);
    assert.equal(parseMac("zz:ab:00:01:02:03"), undefined);
  });

  it("validates interface names like the kernel does", () => {
    assert.equal(linkNameProblem("eth0"), undefined);
    assert.equal(linkNameProblem("a".repeat(15)), undefined);
    assert.match(linkNameProblem("a".repeat(16)) ?? "", /16 bytes, the kernel allows at most 15/);
    assert.match(linkNameProblem("") ?? "", /empty/);
    assert.match(linkNameProblem("a/b") ?? "", /contains/);
    assert.match(linkNameProblem("a b") ?? "", /contains/);
    assert.match(linkNameProblem("..") ?? "", /reserved/);
  });

  it("encodes VXLAN link info that decodes back to the same parameters", () => {
    const buf = vxlanLinkInfo({
      vni: 0xabcdef,
      port: 4790,
      learning: false,
      remote: parseIp("198.18.0.2")!,
      local: parseIp("198.18.0.1")!,
      underlayIndex: 7,
    });
    assert.deepEqual(decodeLinkInfo(buf), {
      kind: "vxlan",
      vxlan: {
        vni: 0xabcdef,
        port: 4790,
        learning: false,
        remote: "198.18.0.2",
        local: "198.18.0.1",
        underlayIndex: 7,
      },
    });
    // IFLA_VXLAN_PORT is big-endian on the wire: 4790 = 0x12b6.
    assert.ok(buf.includes(Buffer.from([0x06, 0x00, 0x0f, 0x00, 0x12, 0xb6])));
  });
});
