// Registry path metadata (spec §1.10.3) and the updatepath rules (spec §2.2, registry flavour).
import { randomUUID } from "node:crypto";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { CallContext } from "../core/context.js";
import { StatusError } from "../core/errors.js";
import { rootLogger } from "../core/log.js";
import { endpoint } from "./client.js";
import { nseRegistryChain } from "./types.js";
import {
  formatPath,
  parsePath,
  pathFromContext,
  updatePath,
  updatePathServer,
  type RegistryPath,
} from "./updatepath.js";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Asserts fn throws INVALID_ARGUMENT whose message names `field`. */
function assertInvalid(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StatusError, `expected a StatusError, got ${String(err)}`);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.ok(err.message.includes(field), `message "${err.message}" should name "${field}"`);
    return true;
  });
}

describe("parsePath", () => {
  it("accepts Go's capitalised keys", () => {
    assert.deepEqual(parsePath('{"Index":1,"PathSegments":[{"name":"a","id":"b","token":"t"}]}'), {
      index: 1,
      segments: [{ name: "a", id: "b", token: "t" }],
    });
  });

  it("accepts the upstream wire form with tokens only", () => {
    assert.deepEqual(parsePath('{"Index":1,"PathSegments":[{"token":"jwt-0"},{"token":"jwt-1"}]}'), {
      index: 1,
      segments: [
        { name: "", id: "", token: "jwt-0" },
        { name: "", id: "", token: "jwt-1" },
      ],
    });
  });

  it("accepts lower-case keys", () => {
    assert.deepEqual(parsePath('{"index":1,"path_segments":[{"name":"a"},{"name":"b","id":"x"}]}'), {
      index: 1,
      segments: [
        { name: "a", id: "", token: "" },
        { name: "b", id: "x", token: "" },
      ],
    });
  });

  it("an empty object is an empty path at index 0", () => {
    assert.deepEqual(parsePath("{}"), { index: 0, segments: [] });
  });

  it("missing Index defaults to 0", () => {
    assert.deepEqual(parsePath('{"PathSegments":[{"name":"a"}]}'), {
      index: 0,
      segments: [{ name: "a", id: "", token: "" }],
    });
  });

  it("reads segment expiry", () => {
    const p = parsePath(
      '{"Index":0,"PathSegments":[{"name":"a","expires":{"seconds":1700000000,"nanos":5}}]}',
    );
    assert.deepEqual(p.segments[0]?.expires, { seconds: 1_700_000_000, nanos: 5 });
  });

  it("ignores unknown keys", () => {
    assert.deepEqual(parsePath('{"Index":0,"PathSegments":[{"name":"a","metrics":{}}],"Extra":true}'), {
      index: 0,
      segments: [{ name: "a", id: "", token: "" }],
    });
  });

  const bad: { name: string; text: string }[] = [
    { name: "not JSON", text: "Index=1" },
    { name: "truncated JSON", text: '{"Index":1,' },
    { name: "empty string", text: "" },
    { name: "JSON null", text: "null" },
    { name: "JSON array", text: '[{"name":"a"}]' },
    { name: "JSON number", text: "42" },
    { name: "JSON string", text: '"path"' },
    { name: "negative index", text: '{"Index":-1,"PathSegments":[{"name":"a"}]}' },
    { name: "fractional index", text: '{"Index":0.5,"PathSegments":[{"name":"a"}]}' },
    { name: "string index", text: '{"Index":"0","PathSegments":[{"name":"a"}]}' },
    { name: "index past the segments", text: '{"Index":2,"PathSegments":[{"name":"a"}]}' },
    { name: "index with no segments", text: '{"Index":1}' },
    { name: "segments not an array", text: '{"Index":0,"PathSegments":{"name":"a"}}' },
    { name: "segment not an object", text: '{"Index":0,"PathSegments":["a"]}' },
    { name: "null segment", text: '{"Index":0,"PathSegments":[null]}' },
    { name: "numeric name", text: '{"Index":0,"PathSegments":[{"name":1}]}' },
    { name: "boolean id", text: '{"Index":0,"PathSegments":[{"name":"a","id":true}]}' },
    { name: "object token", text: '{"Index":0,"PathSegments":[{"name":"a","token":{}}]}' },
    {
      name: "too many segments",
      text: JSON.stringify({
        Index: 0,
        PathSegments: Array.from({ length: 65 }, (_, i) => ({ name: `h${i}` })),
      }),
    },
  ];
  for (const c of bad) {
    it(`rejects ${c.name} with INVALID_ARGUMENT`, () =>
      assertInvalid(() => parsePath(c.text), "metadata path"));
  }

  it("names the offending segment field", () => {
    assertInvalid(
      () => parsePath('{"Index":0,"PathSegments":[{"name":"a"},{"name":"b","token":7}]}'),
      "PathSegments[1].token",
    );
  });

  it("accepts 64 segments", () => {
    const text = JSON.stringify({
      Index: 63,
      PathSegments: Array.from({ length: 64 }, (_, i) => ({ name: `h${i}` })),
    });
    assert.equal(parsePath(text).segments.length, 64);
  });
});

describe("formatPath", () => {
  it("writes Go's capitalised keys", () => {
    const text = formatPath({ index: 1, segments: [{ name: "a", id: "b", token: "t" }] });
    assert.deepEqual(JSON.parse(text), { Index: 1, PathSegments: [{ name: "a", id: "b", token: "t" }] });
  });

  it("leaves out empty segment fields", () => {
    const text = formatPath({ index: 0, segments: [{ name: "", id: "", token: "jwt" }] });
    assert.deepEqual(JSON.parse(text), { Index: 0, PathSegments: [{ token: "jwt" }] });
  });

  it("writes an empty path", () => {
    assert.deepEqual(JSON.parse(formatPath({ index: 0, segments: [] })), { Index: 0, PathSegments: [] });
  });

  const roundTrips: { name: string; path: RegistryPath }[] = [
    { name: "empty path", path: { index: 0, segments: [] } },
    {
      name: "full segments",
      path: {
        index: 1,
        segments: [
          { name: "nse-1", id: "11111111-1111-4111-8111-111111111111", token: "jwt-a" },
          { name: "nsmgr-x", id: "22222222-2222-4222-8222-222222222222", token: "jwt-b" },
          { name: "registry", id: "33333333-3333-4333-8333-333333333333", token: "" },
        ],
      },
    },
    {
      name: "segments with expiry",
      path: {
        index: 0,
        segments: [{ name: "nse-1", id: "i", token: "t", expires: { seconds: 1_700_000_000, nanos: 123 } }],
      },
    },
    {
      name: "tokens only",
      path: {
        index: 1,
        segments: [
          { name: "", id: "", token: "a" },
          { name: "", id: "", token: "b" },
        ],
      },
    },
    {
      name: "names needing JSON escaping",
      path: { index: 0, segments: [{ name: 'we"ird\\name', id: "ü", token: "x\ny" }] },
    },
  ];
  for (const c of roundTrips) {
    it(`round-trips through parsePath: ${c.name}`, () => {
      assert.deepEqual(parsePath(formatPath(c.path)), c.path);
    });
  }
});

describe("updatePath", () => {
  it("empty path (a caller's first call) gets [caller, self] at index 1, as upstream", () => {
    const p: RegistryPath = { index: 0, segments: [] };
    assert.equal(updatePath(p, "registry"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments.length, 2);
    assert.equal(p.segments[0]?.name, "");
    assert.equal(p.segments[1]?.name, "registry");
    assert.match(p.segments[0]?.id ?? "", uuid);
    assert.match(p.segments[1]?.id ?? "", uuid);
  });

  it("empty path with a stray index still starts as [caller, self]", () => {
    const p: RegistryPath = { index: 3, segments: [] };
    assert.equal(updatePath(p, "registry"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments.length, 2);
  });

  it("same name at the index is reused (refresh)", () => {
    const p: RegistryPath = {
      index: 1,
      segments: [
        { name: "nse-1", id: "id-0", token: "t0" },
        { name: "nsmgr", id: "id-1", token: "t1" },
      ],
    };
    const before = structuredClone(p);
    assert.equal(updatePath(p, "nsmgr"), 1);
    assert.deepEqual(p, before);
  });

  it("next segment with our name is taken, keeping its id", () => {
    const p: RegistryPath = {
      index: 0,
      segments: [
        { name: "nse-1", id: "id-0", token: "t0" },
        { name: "nsmgr", id: "id-1", token: "t1" },
        { name: "registry", id: "id-2", token: "t2" },
      ],
    };
    assert.equal(updatePath(p, "nsmgr"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments.length, 3);
    assert.equal(p.segments[1]?.name, "nsmgr");
    assert.equal(p.segments[1]?.id, "id-1");
  });

  it("next segment with a foreign name is renamed with a new id", () => {
    const p: RegistryPath = {
      index: 0,
      segments: [
        { name: "nse-1", id: "id-0", token: "t0" },
        { name: "nsmgr-old", id: "id-1", token: "t1" },
        { name: "registry", id: "id-2", token: "t2" },
      ],
    };
    assert.equal(updatePath(p, "nsmgr-new"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments.length, 3);
    assert.equal(p.segments[1]?.name, "nsmgr-new");
    assert.notEqual(p.segments[1]?.id, "id-1");
    assert.match(p.segments[1]?.id ?? "", uuid);
    assert.deepEqual(p.segments[0], { name: "nse-1", id: "id-0", token: "t0" });
  });

  it("a segment is appended when there is no next one", () => {
    const p: RegistryPath = { index: 0, segments: [{ name: "nse-1", id: "id-0", token: "t0" }] };
    assert.equal(updatePath(p, "nsmgr"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments.length, 2);
    assert.deepEqual(p.segments[0], { name: "nse-1", id: "id-0", token: "t0" });
    assert.equal(p.segments[1]?.name, "nsmgr");
    assert.match(p.segments[1]?.id ?? "", uuid);
  });

  it("a caller segment without a name (upstream token-only form) is followed by ours", () => {
    const p = parsePath('{"Index":0,"PathSegments":[{"token":"jwt-nse"}]}');
    assert.equal(updatePath(p, "nsmgr"), 0);
    assert.equal(p.index, 1);
    assert.equal(p.segments[0]?.token, "jwt-nse");
    assert.equal(p.segments[1]?.name, "nsmgr");
  });

  it("Index+1 past the end is INVALID_ARGUMENT", () => {
    const p: RegistryPath = { index: 1, segments: [{ name: "nse-1", id: "id-0", token: "" }] };
    assertInvalid(() => updatePath(p, "nsmgr"), "metadata path");
  });

  it("Index far past the end is INVALID_ARGUMENT", () => {
    const p: RegistryPath = {
      index: 5,
      segments: [
        { name: "a", id: "1", token: "" },
        { name: "b", id: "2", token: "" },
      ],
    };
    assertInvalid(() => updatePath(p, "c"), "metadata path");
  });

  it("parsed metadata with Index at the end fails in updatePath", () => {
    assertInvalid(
      () => updatePath(parsePath('{"Index":1,"PathSegments":[{"name":"nse-1","id":"x"}]}'), "nsmgr"),
      "metadata path",
    );
  });

  it("fresh ids differ between segments and calls", () => {
    const p1: RegistryPath = { index: 0, segments: [] };
    updatePath(p1, "a");
    updatePath(p1, "b");
    const p2: RegistryPath = { index: 0, segments: [] };
    updatePath(p2, "a");
    const ids = [p1.segments[0]?.id, p1.segments[1]?.id, p2.segments[0]?.id];
    assert.equal(new Set(ids).size, 3);
  });

  it("registration through nse → nsmgr → registry, then a refresh reuses every id", () => {
    // The endpoint sends its own first segment (registryCallMetadata).
    const p: RegistryPath = { index: 0, segments: [{ name: "nse-1", id: randomUUID(), token: "" }] };
    assert.equal(updatePath(p, "nse-1"), 0);
    assert.equal(updatePath(p, "nsmgr"), 0);
    assert.equal(p.index, 1);
    assert.equal(updatePath(p, "registry"), 1);
    assert.equal(p.index, 2);
    assert.deepEqual(
      p.segments.map((s) => s.name),
      ["nse-1", "nsmgr", "registry"],
    );
    const ids = p.segments.map((s) => s.id);

    // The response travels back through the wire form; the refresh starts again at the caller's index.
    const again = parsePath(formatPath({ ...p, index: 0 }));
    assert.equal(updatePath(again, "nse-1"), 0);
    assert.equal(updatePath(again, "nsmgr"), 0);
    assert.equal(updatePath(again, "registry"), 1);
    assert.deepEqual(
      again.segments.map((s) => s.id),
      ids,
    );
  });

  it("a restarted nsmgr with a new name replaces the old one's segment", () => {
    const p: RegistryPath = {
      index: 0,
      segments: [
        { name: "nse-1", id: "id-0", token: "" },
        { name: "nsmgr-abc", id: "id-1", token: "" },
        { name: "registry", id: "id-2", token: "" },
      ],
    };
    assert.equal(updatePath(p, "nsmgr-def"), 0);
    assert.equal(updatePath(p, "registry"), 1);
    assert.equal(p.index, 2);
    assert.equal(p.segments[2]?.id, "id-2");
    assert.deepEqual(
      p.segments.map((s) => s.name),
      ["nse-1", "nsmgr-def", "registry"],
    );
  });
});

describe("updatePathServer", () => {
  type Chain = ReturnType<typeof chainOf>;
  function chainOf() {
    const seen: (RegistryPath | undefined)[] = [];
    const chain = nseRegistryChain([
      updatePathServer("registry"),
      {
        name: "tail",
        register: (nse, ctx) => (seen.push(structuredClone(pathFromContext(ctx))), Promise.resolve(nse)),
        unregister: (_nse, ctx) => (seen.push(structuredClone(pathFromContext(ctx))), Promise.resolve()),
        find: (_q, ctx) => (seen.push(pathFromContext(ctx)), Promise.resolve()),
      },
    ]);
    return { chain, seen };
  }
  const ctxWith = (path?: string): CallContext => {
    const md = new Metadata();
    if (path !== undefined) md.set("path", path);
    return new CallContext(rootLogger, new AbortController().signal, md);
  };
  const register = (c: Chain, ctx: CallContext) => c.chain.register(endpoint({ name: "nse-1" }), ctx);

  it("no path metadata: [caller, self] for the chain, no path header (upstream grpcmetadata)", async () => {
    const c = chainOf();
    const ctx = ctxWith();
    await register(c, ctx);
    assert.equal(c.seen[0]?.index, 1);
    assert.equal(c.seen[0]?.segments.length, 2);
    assert.deepEqual(ctx.responseHeaders.get("path"), []);
    const un = ctxWith();
    await c.chain.unregister(endpoint({ name: "nse-1" }), un);
    assert.equal(c.seen[1]?.segments.length, 2);
    assert.deepEqual(un.responseHeaders.get("path"), []);
  });

  it("with path metadata: the path comes back at the caller's index, on Register and Unregister", async () => {
    const c = chainOf();
    for (const call of ["register", "unregister"] as const) {
      const ctx = ctxWith(JSON.stringify({ Index: 0, PathSegments: null }));
      if (call === "register") await register(c, ctx);
      else await c.chain.unregister(endpoint({ name: "nse-1" }), ctx);
      const back = parsePath(ctx.responseHeaders.get("path")[0] as string);
      assert.equal(back.index, 0, call);
      assert.equal(back.segments.length, 2, call);
    }
  });

  it("Find neither reads the path (a malformed one is no error) nor returns one", async () => {
    const c = chainOf();
    const ctx = ctxWith("{not json");
    await c.chain.find({ networkServiceEndpoint: endpoint({}), watch: false }, ctx, {
      send: () => undefined,
    });
    assert.deepEqual(c.seen, [undefined]);
    assert.deepEqual(ctx.responseHeaders.get("path"), []);
  });

  it("a malformed path on Register is INVALID_ARGUMENT, before anything else runs", async () => {
    const c = chainOf();
    await assert.rejects(
      async () => register(c, ctxWith("{not json")),
      (e: unknown) => e instanceof StatusError && e.code === status.INVALID_ARGUMENT,
    );
    assert.deepEqual(c.seen, []);
  });
});
