// excludedprefixes: the server adds configured prefixes (deduplicated, dropped again when unconfigured), the
// YAML file source follows file changes, and the client keeps its connections' address spaces apart.
import assert from "node:assert/strict";
import { mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import { Connection } from "../../api/connection.js";
import type { DeepPartial, IPContext } from "../../api/connectioncontext.js";
import { NetworkServiceRequest } from "../../api/networkservice.js";
import { chain, type NetworkServiceElement, type NetworkServiceNext } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { StatusError } from "../../core/errors.js";
import { point2pointIpam } from "../ipam/ipam.js";
import {
  defaultPrefixesFile,
  excludedPrefixesClient,
  excludedPrefixesServer,
  parsePrefixesYaml,
  prefixesFromFile,
} from "./excludedprefixes.js";

const log = pino({ level: "silent" });

function ctxWith(meta?: ConnectionMetadata): CallContext {
  const ctx = new CallContext(log, new AbortController().signal);
  if (meta) ctx.connection = meta;
  return ctx;
}

function request(id: string, ipContext?: DeepPartial<IPContext>, networkService = ""): NetworkServiceRequest {
  return NetworkServiceRequest.fromPartial({
    connection: { id, networkService, context: ipContext ? { ipContext } : undefined },
  });
}

/** A tail that records the excluded prefixes each request carried. */
function recorder(): NetworkServiceElement & { seen: string[][] } {
  const seen: string[][] = [];
  return {
    name: "recorder",
    seen,
    request: (req, ctx, next) => {
      seen.push([...(req.connection?.context?.ipContext?.excludedPrefixes ?? [])]);
      return next.request(req, ctx);
    },
  };
}

describe("excludedPrefixesServer", () => {
  it("adds the configured prefixes after the request's own, without duplicates, creating the ip context", async () => {
    const rec = recorder();
    const c = chain([
      excludedPrefixesServer(() => ["10.96.0.0/12", "10.244.0.0/16", "2001:DB8:0::/32"]),
      rec,
    ]);
    const conn = await c.request(
      request("c1", {
        excludedPrefixes: ["192.168.0.0/16", "10.96.0.0/12", "2001:db8::/32", "192.168.0.0/16"],
      }),
      ctxWith(),
    );
    assert.deepEqual(conn.context!.ipContext!.excludedPrefixes, [
      "192.168.0.0/16",
      "10.96.0.0/12",
      "2001:db8::/32",
      "10.244.0.0/16",
    ]);
    const bare = await c.request(request("c2"), ctxWith());
    assert.deepEqual(bare.context!.ipContext!.excludedPrefixes, [
      "10.96.0.0/12",
      "10.244.0.0/16",
      "2001:DB8:0::/32",
    ]);
    // A refresh carrying the previous response gains nothing twice.
    const again = await c.request(NetworkServiceRequest.fromPartial({ connection: bare }), ctxWith());
    assert.deepEqual(again.context!.ipContext!.excludedPrefixes, bare.context!.ipContext!.excludedPrefixes);
  });

  it("asks the source on every request and drops, on refresh, what it added and no longer configures", async () => {
    let configured = ["10.96.0.0/12", "10.244.0.0/16"];
    const c = chain([excludedPrefixesServer(() => configured)]);
    const meta = new ConnectionMetadata();
    const first = await c.request(request("c1", { excludedPrefixes: ["172.16.0.0/12"] }), ctxWith(meta));
    assert.deepEqual(first.context!.ipContext!.excludedPrefixes, [
      "172.16.0.0/12",
      "10.96.0.0/12",
      "10.244.0.0/16",
    ]);
    configured = ["10.244.0.0/16", "10.50.0.0/16"];
    const refreshed = await c.request(
      NetworkServiceRequest.fromPartial({ connection: Connection.fromPartial(first) }),
      ctxWith(meta),
    );
    assert.deepEqual(refreshed.context!.ipContext!.excludedPrefixes, [
      "172.16.0.0/12",
      "10.244.0.0/16",
      "10.50.0.0/16",
    ]);
    configured = [];
    const last = await c.request(
      NetworkServiceRequest.fromPartial({ connection: Connection.fromPartial(refreshed) }),
      ctxWith(meta),
    );
    assert.deepEqual(
      last.context!.ipContext!.excludedPrefixes,
      ["172.16.0.0/12"],
      "the client's own entry stays",
    );
  });

  it("makes the endpoint's IPAM skip the configured prefixes", async () => {
    const c = chain([excludedPrefixesServer(() => ["172.16.1.0/30"]), point2pointIpam(["172.16.1.0/29"])]);
    const conn = await c.request(request("c1"), ctxWith(new ConnectionMetadata()));
    assert.deepEqual(conn.context!.ipContext!.dstIpAddrs, ["172.16.1.4/32"]);
    assert.deepEqual(conn.context!.ipContext!.srcIpAddrs, ["172.16.1.5/32"]);
  });
});

describe("parsePrefixesYaml", () => {
  it("reads prefixes (or Prefixes), dropping duplicates; empty means none", () => {
    assert.deepEqual(
      parsePrefixesYaml("prefixes:\n  - 10.96.0.0/12\n  - 10.244.0.0/16\n  - 10.96.0.0/12\n", "f"),
      ["10.96.0.0/12", "10.244.0.0/16"],
    );
    assert.deepEqual(parsePrefixesYaml("Prefixes: [fd00::/8]", "f"), ["fd00::/8"]);
    assert.deepEqual(parsePrefixesYaml("", "f"), []);
    assert.deepEqual(parsePrefixesYaml("prefixes:", "f"), []);
    assert.deepEqual(parsePrefixesYaml("other: 1", "f"), []);
  });

  const bad: Array<[string, RegExp]> = [
    ["prefixes: [10.0.0.0/33]", /cfg\.yaml: .*"10\.0\.0\.0\/33" is not a CIDR/],
    ["prefixes: [10.0.0.1]", /"10\.0\.0\.1" is not a CIDR/],
    ["prefixes: [1]", /entry 1 is not a CIDR/],
    ["prefixes: 10.0.0.0/8", /must be a list/],
    ["- 10.0.0.0/8", /expected a mapping/],
    ["prefixes: [unclosed", /cfg\.yaml: not valid YAML/],
  ];
  for (const [text, want] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () =>
      assert.throws(() => parsePrefixesYaml(text, "cfg.yaml"), want));
  }
});

describe("prefixesFromFile", () => {
  let dir = "";
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nsm-excluded-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("follows the file: missing, written, changed, broken, removed", () => {
    const file = join(dir, "excluded_prefixes.yaml");
    const source = prefixesFromFile(file, log);
    assert.deepEqual(source(), [], "missing file: no prefixes");
    writeFileSync(file, "prefixes: [10.96.0.0/12]\n");
    assert.deepEqual(source(), ["10.96.0.0/12"]);
    assert.deepEqual(source(), ["10.96.0.0/12"], "unchanged");
    // Same size, new content: still noticed (identity and times are compared, not only the size).
    writeFileSync(file, "prefixes: [10.97.0.0/12]\n");
    assert.deepEqual(source(), ["10.97.0.0/12"]);
    writeFileSync(file, "prefixes: [10.97.0.0/12, 10.244.0.0/16]\n");
    assert.deepEqual(source(), ["10.97.0.0/12", "10.244.0.0/16"]);
    writeFileSync(file, "prefixes: [not-a-cidr]\n");
    assert.deepEqual(source(), ["10.97.0.0/12", "10.244.0.0/16"], "invalid file: previous list kept");
    writeFileSync(file, "prefixes: []\n");
    assert.deepEqual(source(), []);
    writeFileSync(file, "prefixes: [192.168.0.0/16]\n");
    assert.deepEqual(source(), ["192.168.0.0/16"]);
    unlinkSync(file);
    assert.deepEqual(source(), [], "removed file: no prefixes");
  });

  it("follows a Kubernetes ConfigMap style symlink swap", () => {
    const mount = join(dir, "mount");
    const write = (name: string, text: string): void => {
      writeFileSync(join(dir, name), text);
      symlinkSync(join(dir, name), join(dir, "tmp-link"));
      renameSync(join(dir, "tmp-link"), mount); // atomic replace, as kubelet does with ..data
    };
    write("v1.yaml", "prefixes: [10.1.0.0/16]\n");
    const source = prefixesFromFile(mount);
    assert.deepEqual(source(), ["10.1.0.0/16"]);
    write("v2.yaml", "prefixes: [10.2.0.0/16]\n");
    assert.deepEqual(source(), ["10.2.0.0/16"]);
  });

  it("feeds the server element", async () => {
    const file = join(dir, "server.yaml");
    writeFileSync(file, "prefixes: [10.96.0.0/12]\n");
    const c = chain([excludedPrefixesServer(prefixesFromFile(file))]);
    const first = await c.request(request("c1"), ctxWith());
    assert.deepEqual(first.context!.ipContext!.excludedPrefixes, ["10.96.0.0/12"]);
    writeFileSync(file, "prefixes: [10.244.0.0/16]\n");
    const second = await c.request(request("c2"), ctxWith());
    assert.deepEqual(second.context!.ipContext!.excludedPrefixes, ["10.244.0.0/16"]);
  });

  it("has upstream's default path", () => {
    assert.equal(defaultPrefixesFile, "/var/lib/networkservicemesh/config/excluded_prefixes.yaml");
  });
});

/**
 * An NSC whose chain is [excludedPrefixesClient, router]; the router sends each connection to the endpoint
 * named by its network service. Endpoints are chains with their own metadata per connection id.
 */
class Client {
  readonly chain: NetworkServiceNext;
  readonly endpoints = new Map<string, NetworkServiceNext>();
  readonly nseMeta = new Map<string, ConnectionMetadata>();
  readonly closed: string[] = [];

  constructor() {
    const router: NetworkServiceElement = {
      name: "router",
      request: (req, ctx) => {
        const conn = req.connection!;
        return this.endpoint(conn.networkService).request(req, this.nseCtx(conn.id, ctx));
      },
      close: async (conn, ctx) => {
        this.closed.push(conn.id);
        await this.endpoint(conn.networkService).close(conn, this.nseCtx(conn.id, ctx));
        this.nseMeta.delete(conn.id);
      },
    };
    this.chain = chain([excludedPrefixesClient(), router]);
  }

  private endpoint(name: string): NetworkServiceNext {
    const e = this.endpoints.get(name);
    assert.ok(e, `no endpoint ${name}`);
    return e;
  }

  private nseCtx(id: string, ctx: CallContext): CallContext {
    let meta = this.nseMeta.get(id);
    if (!meta) this.nseMeta.set(id, (meta = new ConnectionMetadata()));
    const nse = new CallContext(ctx.log, ctx.signal);
    nse.connection = meta;
    return nse;
  }

  /** An endpoint with an ipam element (which honours excluded prefixes), with an optional delay first. */
  ipamEndpoint(name: string, cidr: string, delayMs = 0): void {
    const delay: NetworkServiceElement = {
      name: "delay",
      request: async (req, ctx, next) => {
        await new Promise((r) => setTimeout(r, delayMs));
        return next.request(req, ctx);
      },
    };
    this.endpoints.set(name, chain([delay, point2pointIpam([cidr])]));
  }

  /** A misbehaving endpoint that hands out fixed addresses whatever is excluded. */
  fixedEndpoint(name: string, src: string, dst: string): void {
    const fixed: NetworkServiceElement = {
      name: "fixed",
      request: (req, ctx, next) => {
        const ipc = req.connection!.context!.ipContext!;
        ipc.srcIpAddrs = [src];
        ipc.dstIpAddrs = [dst];
        ipc.srcRoutes = [{ prefix: dst, nextHop: "" }];
        ipc.dstRoutes = [{ prefix: src, nextHop: "" }];
        return next.request(req, ctx);
      },
    };
    this.endpoints.set(name, chain([fixed]));
  }

  request(req: NetworkServiceRequest): Promise<Connection> {
    return this.chain.request(req, ctxWith());
  }

  refresh(conn: Connection): Promise<Connection> {
    return this.request(NetworkServiceRequest.fromPartial({ connection: Connection.fromPartial(conn) }));
  }

  close(conn: Connection): Promise<void> {
    return this.chain.close(conn, ctxWith());
  }
}

const addrs = (c: Connection): string[] => [
  ...c.context!.ipContext!.srcIpAddrs,
  ...c.context!.ipContext!.dstIpAddrs,
];

async function assertPrecondition(p: Promise<unknown>, ...mentions: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.FAILED_PRECONDITION, err.message);
    for (const m of mentions) assert.ok(err.message.includes(m), `"${err.message}" should mention "${m}"`);
    return true;
  });
}

describe("excludedPrefixesClient", () => {
  it("excludes the addresses and routes of the client's other connections", async () => {
    const nsc = new Client();
    // Two endpoints with the same CIDR (upstream's exclude-prefixes-client example).
    nsc.ipamEndpoint("ns-1", "172.16.1.0/29");
    nsc.ipamEndpoint("ns-2", "172.16.1.0/29");
    const a = await nsc.request(request("a", undefined, "ns-1"));
    assert.deepEqual(addrs(a), ["172.16.1.2/32", "172.16.1.1/32"]);
    const reqB = request("b", { excludedPrefixes: ["10.96.0.0/12"] }, "ns-2");
    const b = await nsc.request(reqB);
    assert.deepEqual(addrs(b), ["172.16.1.4/32", "172.16.1.3/32"], "ns-2 avoided a's addresses");
    // What the element added is not left on the returned connection nor on the caller's request.
    assert.deepEqual(b.context!.ipContext!.excludedPrefixes, ["10.96.0.0/12"]);
    assert.deepEqual(reqB.connection!.context!.ipContext!.excludedPrefixes, ["10.96.0.0/12"]);

    // A refresh of a excludes b's space but not its own, and keeps its addresses.
    const seen: string[][] = [];
    const inner = nsc.endpoints.get("ns-1")!;
    nsc.endpoints.set("ns-1", {
      request: (req, ctx) => {
        seen.push([...req.connection!.context!.ipContext!.excludedPrefixes]);
        return inner.request(req, ctx);
      },
      close: (conn, ctx) => inner.close(conn, ctx),
    });
    const a2 = await nsc.refresh(a);
    assert.deepEqual(addrs(a2), addrs(a));
    assert.deepEqual(seen, [["172.16.1.4/32", "172.16.1.3/32"]]);

    // Once a is closed its space is free again for the client's other connections.
    await nsc.close(a2);
    const c = await nsc.request(request("c", undefined, "ns-1"));
    assert.deepEqual(addrs(c), ["172.16.1.2/32", "172.16.1.1/32"]);
    assert.deepEqual(nsc.closed, ["a"]);
  });

  it("excludes the networks of wider addresses and route prefixes, but never a default route", async () => {
    const nsc = new Client();
    const rec = recorder();
    nsc.endpoints.set("rec", chain([rec]));
    await nsc.request(
      request(
        "a",
        {
          srcIpAddrs: ["10.5.0.7/24"],
          dstIpAddrs: ["10.5.0.1/24"],
          srcRoutes: [{ prefix: "0.0.0.0/0" }, { prefix: "192.168.10.0/24" }],
          dstRoutes: [{ prefix: "::/0" }],
        },
        "rec",
      ),
    );
    await nsc.request(request("b", undefined, "rec"));
    assert.deepEqual(rec.seen, [[], ["10.5.0.0/24", "192.168.10.0/24"]]);
  });

  it("closes and rejects a connection whose endpoint hands out an excluded address", async () => {
    const nsc = new Client();
    nsc.ipamEndpoint("good", "172.16.1.0/29");
    nsc.fixedEndpoint("bad", "172.16.1.2/32", "172.16.1.1/32");
    const a = await nsc.request(request("a", undefined, "good"));
    await assertPrecondition(
      nsc.request(request("b", undefined, "bad")),
      "172.16.1.2/32",
      "connection a",
      "connection b",
      "closed",
    );
    assert.deepEqual(nsc.closed, ["b"], "the rejected connection was closed downstream");
    // The rejected connection's addresses are not held against later connections.
    const rec = recorder();
    nsc.endpoints.set("rec", chain([rec]));
    await nsc.request(request("c", undefined, "rec"));
    assert.deepEqual(rec.seen, [addrs(a)]);
  });

  it("forgets a refreshed connection it rejected", async () => {
    const nsc = new Client();
    nsc.ipamEndpoint("ns-1", "172.16.1.0/29");
    nsc.ipamEndpoint("ns-2", "172.16.1.0/29");
    const a = await nsc.request(request("a", undefined, "ns-1"));
    const b = await nsc.request(request("b", undefined, "ns-2"));
    // ns-1 is replaced by an endpoint that hands out b's addresses on a's refresh.
    nsc.fixedEndpoint("ns-1", "172.16.1.4/32", "172.16.1.3/32");
    await assertPrecondition(nsc.refresh(a), "connection a", "connection b");
    assert.deepEqual(nsc.closed, ["a"]);
    // a's old space is no longer held against the client's other connections.
    const rec = recorder();
    nsc.endpoints.set("rec", chain([rec]));
    await nsc.request(request("c", undefined, "rec"));
    assert.deepEqual(rec.seen, [addrs(b)]);
  });

  it("also rejects an address inside a prefix the request itself excluded", async () => {
    const nsc = new Client();
    nsc.fixedEndpoint("bad", "10.100.0.2/32", "10.100.0.1/32");
    await assertPrecondition(
      nsc.request(request("a", { excludedPrefixes: ["10.96.0.0/12"] }, "bad")),
      "10.100.0.2/32",
      "10.96.0.0/12",
      "excluded by the request",
    );
    assert.deepEqual(nsc.closed, ["a"]);
  });

  it("rejects the later of two concurrent connections that got the same addresses", async () => {
    const nsc = new Client();
    nsc.ipamEndpoint("fast", "172.16.1.0/29", 1);
    nsc.ipamEndpoint("slow", "172.16.1.0/29", 30);
    const [a, b] = await Promise.allSettled([
      nsc.request(request("a", undefined, "slow")),
      nsc.request(request("b", undefined, "fast")),
    ]);
    assert.equal(b.status, "fulfilled");
    assert.equal(a.status, "rejected");
    await assertPrecondition(Promise.reject(a.reason as Error), "connection b", "172.16.1.");
  });

  it("restores the request's excluded prefixes when the request fails", async () => {
    const nsc = new Client();
    nsc.ipamEndpoint("ns", "172.16.1.0/29");
    await nsc.request(request("a", undefined, "ns"));
    nsc.endpoints.set("down", {
      request: () => Promise.reject(new StatusError(status.UNAVAILABLE, "no endpoint")),
      close: () => Promise.resolve(),
    });
    const req = request("b", { excludedPrefixes: ["10.96.0.0/12"] }, "down");
    await assert.rejects(nsc.request(req), /no endpoint/);
    assert.deepEqual(req.connection!.context!.ipContext!.excludedPrefixes, ["10.96.0.0/12"]);
  });
});
