// Reading the agent's port document (spec §1.4): IPv4 with its prefix length, IPv6 without one, unspecified
// addresses as absent, and the comparison with the connection context the forwarder logs a warning on.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addressesNotInContext, agentAddresses, type PortInfo } from "./agent.js";

const base: PortInfo = {
  id: "vmi",
  "instance-id": "vm",
  "vn-id": "vn",
  "mac-address": "02:00:00:00:00:01",
  "system-name": "tapvmi",
};

describe("agent port document addresses", () => {
  it("reads v4 with plen and v6 without, canonical", () => {
    assert.deepEqual(agentAddresses({ ...base, "ip-address": "100.64.10.252", plen: 24 }), {
      v4: "100.64.10.252/24",
    });
    assert.deepEqual(
      agentAddresses({ ...base, "v6-ip-address": "2001:DB8:1:0:FFFF:FFFF:FFFF:FFFC", "v6-gateway": "x" }),
      { v6: "2001:db8:1:0:ffff:ffff:ffff:fffc" },
    );
    assert.deepEqual(
      agentAddresses({ ...base, "ip-address": "0.0.0.0", plen: 0, "v6-ip-address": "::" }),
      {},
    );
  });

  it("finds nothing amiss when the context has the agent's addresses", () => {
    const doc = {
      ...base,
      "ip-address": "100.64.10.252",
      plen: 24,
      "v6-ip-address": "2001:db8:1:0:ffff:ffff:ffff:fffc",
    };
    assert.deepEqual(
      addressesNotInContext(doc, ["100.64.10.252/24", "2001:db8:1::ffff:ffff:ffff:fffc/64"]),
      [],
    );
  });

  it("names the agent's addresses the context lacks", () => {
    const doc = { ...base, "ip-address": "100.64.10.251", plen: 24, "v6-ip-address": "2001:db8:1::5" };
    assert.deepEqual(addressesNotInContext(doc, ["100.64.10.252/24", "2001:db8:1::6/64"]), [
      "100.64.10.251/24",
      "2001:db8:1::5",
    ]);
    // Same v4 address, another prefix length: differs.
    assert.deepEqual(
      addressesNotInContext({ ...base, "ip-address": "100.64.10.252", plen: 16 }, ["100.64.10.252/24"]),
      ["100.64.10.252/16"],
    );
  });
});
