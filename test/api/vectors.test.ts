// Upstream wire vectors (bytes produced by networkservicemesh/api's protos) must decode with our generated
// code to exactly the values of their text form, and re-encode to bytes that decode to the same values.
// The text form is turned into binary with buf and *our* protos (by field name), the .bin is decoded by our
// generated code (by field number): a wrong number, type or package makes the two disagree.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectionEvent,
  ConnectionEventType,
  MonitorScopeSelector,
  State,
} from "../../src/api/connection.js";
import { NetworkServiceRequest } from "../../src/api/networkservice.js";
import {
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceEndpointQuery,
  NetworkServiceEndpointResponse,
  NetworkServiceQuery,
} from "../../src/api/registry.js";
import { PrefixRequest, PrefixResponse, Type } from "../../src/api/ipam.js";
import { IpFamily_Family } from "../../src/api/connectioncontext.js";

const dir = new URL("../fixtures/nsm-api-vectors/", import.meta.url);
const root = new URL("../../", import.meta.url);

interface Codec<T> {
  decode(b: Uint8Array): T;
  encode(m: T): { finish(): Uint8Array };
}

function bufEncodeText(type: string, file: string): Uint8Array {
  return execFileSync(
    new URL("node_modules/.bin/buf", root).pathname,
    [
      "convert",
      ".",
      "--type",
      type,
      "--from",
      new URL(`${file}.txtpb`, dir).pathname,
      "--to",
      "-#format=binpb",
    ],
    { cwd: root.pathname },
  );
}

function check<T>(file: string, type: string, codec: Codec<T>, spot: (m: T) => void): void {
  it(`${file}: ${type}`, () => {
    const upstream = codec.decode(readFileSync(new URL(`${file}.bin`, dir)));
    const fromText = codec.decode(bufEncodeText(type, file));
    assert.deepEqual(upstream, fromText, "decoded .bin differs from the .txtpb values");
    spot(upstream);
    const again = codec.decode(codec.encode(upstream).finish());
    assert.deepEqual(again, upstream, "round trip changed the message");
  });
}

describe("NSM v1 wire vectors", () => {
  check("request", "networkservice.NetworkServiceRequest", NetworkServiceRequest, (m) => {
    const c = m.connection!;
    assert.equal(c.id, "nsc-1-0");
    assert.equal(c.mechanism!.parameters.inodeURL, "inode://4/4026532300");
    assert.equal(c.context!.MTU, 1450);
    assert.equal(c.context!.ipContext!.srcRoutes[0]!.nextHop, "169.254.0.0");
    assert.equal(c.context!.ipContext!.extraPrefixRequest[0]!.addrFamily!.family, IpFamily_Family.IPV6);
    assert.equal(c.context!.ipContext!.policies[0]!.dstPort, "80-81");
    assert.equal(c.context!.ethernetContext!.vlanTag, 100);
    assert.deepEqual(c.path!.pathSegments[0]!.expires, { seconds: 1800000000, nanos: 5 });
    assert.equal(c.path!.index, 1);
    assert.equal(c.state, State.REFRESH_REQUESTED);
    assert.equal(c.payload, "ETHERNET");
    assert.equal(m.mechanismPreferences[1]!.parameters.vni, "4242");
  });
  check("event", "connection.ConnectionEvent", ConnectionEvent, (m) => {
    assert.equal(m.type, ConnectionEventType.UPDATE);
    assert.equal(m.connections.c1!.state, State.DOWN);
  });
  check("selector", "connection.MonitorScopeSelector", MonitorScopeSelector, (m) => {
    assert.deepEqual(m.networkServices, ["svc-a", "svc-b"]);
    assert.equal(m.pathSegments[0]!.id, "abc");
  });
  check("ns", "registry.NetworkService", NetworkService, (m) => {
    assert.equal(m.matches[0]!.routes[0]!.weight, 7);
    assert.equal(m.matches[0]!.fallthrough, true);
    assert.equal(m.matches[0]!.metadata!.labels.p2p, "true");
    assert.equal(m.matches[1]!.routes[0]!.destinationSelector.nodeName, "{{.nodeName}}");
  });
  check("nse", "registry.NetworkServiceEndpoint", NetworkServiceEndpoint, (m) => {
    assert.deepEqual(m.networkServiceNames, ["icmp-responder", "external"]);
    assert.equal(m.networkServiceLabels["icmp-responder"]!.labels.nodeName, "node-1");
    assert.deepEqual(m.expirationTime, { seconds: 1800000060, nanos: 7 });
    assert.deepEqual(m.initialRegistrationTime, { seconds: 1800000000, nanos: 0 });
  });
  check("nsequery", "registry.NetworkServiceEndpointQuery", NetworkServiceEndpointQuery, (m) => {
    assert.equal(m.watch, true);
  });
  check("nseresp", "registry.NetworkServiceEndpointResponse", NetworkServiceEndpointResponse, (m) => {
    assert.equal(m.deleted, true);
    assert.equal(m.networkServiceEndpoint!.url, "unix:///run/nse.sock");
  });
  check("nsquery", "registry.NetworkServiceQuery", NetworkServiceQuery, (m) => {
    assert.equal(m.networkService!.name, "icmp-responder");
  });
  check("prefixreq", "ipam.PrefixRequest", PrefixRequest, (m) => {
    assert.equal(m.type, Type.ALLOCATE);
    assert.deepEqual(m.excludePrefixes, ["172.16.0.0/24"]);
  });
  check("prefixresp", "ipam.PrefixResponse", PrefixResponse, (m) => {
    assert.equal(m.prefix, "172.16.1.0/24");
  });
});
