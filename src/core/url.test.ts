// NSM endpoint URLs: tcp://host:port, unix:///path and, for registered NSEs, inode://dev/ino (spec §1.10.4–5).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { StatusError } from "./errors.js";
import { formatEndpoint, grpcTarget, parseEndpoint, validateRegisteredUrl, type Endpoint } from "./url.js";

function assertInvalid(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.ok(err.message.includes(field), `message "${err.message}" should name "${field}"`);
    return true;
  });
}

describe("parseEndpoint", () => {
  const good: [string, Endpoint][] = [
    ["tcp://1.2.3.4:5001", { kind: "tcp", host: "1.2.3.4", port: 5001 }],
    ["tcp://registry:5002", { kind: "tcp", host: "registry", port: 5002 }],
    [
      "tcp://registry.nsm-system.svc.cluster.local:5002",
      {
        kind: "tcp",
        host: "registry.nsm-system.svc.cluster.local",
        port: 5002,
      },
    ],
    ["tcp://[::1]:5002", { kind: "tcp", host: "::1", port: 5002 }],
    ["tcp://[fd00::5]:5001", { kind: "tcp", host: "fd00::5", port: 5001 }],
    ["tcp://[::]:5001", { kind: "tcp", host: "::", port: 5001 }],
    ["tcp://:5001", { kind: "tcp", host: "0.0.0.0", port: 5001 }],
    ["tcp://0.0.0.0:0", { kind: "tcp", host: "0.0.0.0", port: 0 }],
    ["tcp://h:65535", { kind: "tcp", host: "h", port: 65535 }],
    ["unix:///run/x.sock", { kind: "unix", path: "/run/x.sock" }],
    [
      "unix:///var/lib/networkservicemesh/nsm.io.sock",
      {
        kind: "unix",
        path: "/var/lib/networkservicemesh/nsm.io.sock",
      },
    ],
    ["unix:///listen.on.sock", { kind: "unix", path: "/listen.on.sock" }],
  ];
  for (const [url, want] of good) {
    it(`parses ${url}`, () => assert.deepEqual(parseEndpoint(url), want));
  }

  const bad = [
    "",
    "http://x",
    "http://x:80",
    "tcp://host",
    "tcp://host:",
    "tcp://h:99999",
    "tcp://h:65536",
    "tcp://h:123456",
    "tcp://h:-1",
    "tcp://h:port",
    "tcp://1.2.3.4:5001/",
    "tcp://1.2.3.4:5001/path",
    "tcp://::1:5002",
    "tcp://[::1:5002",
    "tcp://[not-hex]:5002",
    "tcp://a:b:5001",
    "1.2.3.4:5001",
    "unix://relative",
    "unix://",
    "unix:relative",
    "TCP://1.2.3.4:5001",
    "inode://4/123",
  ];
  for (const url of bad) {
    it(`rejects ${JSON.stringify(url)} with INVALID_ARGUMENT naming the field`, () =>
      assertInvalid(() => parseEndpoint(url, "--listen-on"), "--listen-on"));
  }

  it("names the field 'url' by default", () => assertInvalid(() => parseEndpoint("http://x"), "url"));

  it("the error quotes the offending URL", () => {
    assert.throws(
      () => parseEndpoint("tcp://h:99999", "f"),
      (err: unknown) => err instanceof Error && err.message.includes("tcp://h:99999"),
    );
  });
});

describe("grpcTarget", () => {
  const cases: [Endpoint, string][] = [
    [{ kind: "tcp", host: "1.2.3.4", port: 5001 }, "1.2.3.4:5001"],
    [{ kind: "tcp", host: "registry", port: 5002 }, "registry:5002"],
    [{ kind: "tcp", host: "0.0.0.0", port: 5001 }, "127.0.0.1:5001"],
    [{ kind: "tcp", host: "::", port: 5001 }, "[::1]:5001"],
    [{ kind: "tcp", host: "::1", port: 5002 }, "[::1]:5002"],
    [{ kind: "tcp", host: "fd00::5", port: 5002 }, "[fd00::5]:5002"],
    [{ kind: "unix", path: "/run/x.sock" }, "unix:///run/x.sock"],
  ];
  for (const [ep, want] of cases) {
    it(`${JSON.stringify(ep)} → ${want}`, () => assert.equal(grpcTarget(ep), want));
  }

  it("a wildcard listen URL is dialled on loopback", () => {
    assert.equal(grpcTarget(parseEndpoint("tcp://:5001")), "127.0.0.1:5001");
    assert.equal(grpcTarget(parseEndpoint("tcp://[::]:5001")), "[::1]:5001");
  });
});

describe("formatEndpoint", () => {
  const cases: [Endpoint, string][] = [
    [{ kind: "tcp", host: "1.2.3.4", port: 5001 }, "tcp://1.2.3.4:5001"],
    [{ kind: "tcp", host: "::1", port: 5002 }, "tcp://[::1]:5002"],
    [{ kind: "tcp", host: "0.0.0.0", port: 5001 }, "tcp://0.0.0.0:5001"],
    [{ kind: "unix", path: "/run/x.sock" }, "unix:///run/x.sock"],
  ];
  for (const [ep, want] of cases) {
    it(`${JSON.stringify(ep)} → ${want}`, () => assert.equal(formatEndpoint(ep), want));
  }

  for (const url of [
    "tcp://1.2.3.4:5001",
    "tcp://[::1]:5002",
    "tcp://[fd00::5]:1",
    "unix:///run/x.sock",
    "tcp://nsmgr:5001",
  ]) {
    it(`round-trips ${url}`, () => assert.equal(formatEndpoint(parseEndpoint(url)), url));
  }
});

describe("validateRegisteredUrl", () => {
  for (const url of [
    "",
    "tcp://1.2.3.4:5001",
    "tcp://[::1]:5002",
    "unix:///run/x.sock",
    "inode://4/123",
    "inode://0/0",
  ]) {
    it(`accepts ${JSON.stringify(url)}`, () =>
      assert.doesNotThrow(() => validateRegisteredUrl(url, "nse.url")));
  }
  for (const url of [
    "inode://4",
    "inode://4/",
    "inode:///123",
    "inode://a/1",
    "inode://4/123/5",
    "inode://-4/123",
    "http://x",
    "tcp://h:99999",
    "unix://relative",
  ]) {
    it(`rejects ${JSON.stringify(url)}`, () =>
      assertInvalid(() => validateRegisteredUrl(url, "nse.url"), "nse.url"));
  }
});
