// ClientPool: a dial policy refuses URLs with PERMISSION_DENIED naming them; the pool keeps at most
// maxChannels channels, evicting the least recently used one that carries no call; calls without a token get
// the component's.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { MonitorConnectionService, type ConnectionEvent } from "../../api/connection.js";
import type { ServerStream } from "../../core/client.js";
import { NsmServer } from "../../core/grpc.js";
import { rootLogger } from "../../core/log.js";
import { tokenKey } from "../../security/token.js";
import { MonitorStore, monitorConnectionService } from "../monitor/monitor.js";
import { ClientPool, defaultDialPolicy, dialPolicy } from "./pool.js";

const code = (e: unknown): status | undefined => (e as { code?: status }).code;

describe("dialPolicy", () => {
  it("default: unix and tcp anywhere, nothing else", () => {
    assert.ok(defaultDialPolicy("unix:///run/nsm/nsm.io.sock"));
    assert.ok(defaultDialPolicy("tcp://203.0.113.7:5001"));
    assert.ok(!defaultDialPolicy("dns:///evil.example:443"));
    assert.ok(!defaultDialPolicy("inode://4/4026531833"));
  });

  it("rules: unix directories, tcp ranges (IPv4 and IPv6); host names never match a range", () => {
    const allow = dialPolicy(["unix:/run/nsm", "tcp:198.18.0.0/15", "tcp:[fd00::]/8", "tcp:127.0.0.1/32"]);
    assert.ok(allow("unix:///run/nsm/nsmgr.sock"));
    assert.ok(!allow("unix:///run/nsm-other/x.sock"), "a directory prefix, not a string prefix");
    assert.ok(!allow("unix:///var/run/docker.sock"));
    assert.ok(allow("tcp://198.19.255.1:5001"));
    assert.ok(!allow("tcp://198.20.0.1:5001"));
    assert.ok(allow("tcp://[fd12::1]:5001"));
    assert.ok(!allow("tcp://[2001:db8::1]:5001"));
    assert.ok(allow("tcp://127.0.0.1:5002"));
    assert.ok(!allow("tcp://localhost:5002"), "a name could resolve anywhere");
    assert.ok(!allow("tcp://169.254.169.254:80"), "no cloud metadata endpoint");
    assert.ok(dialPolicy(["tcp"])("tcp://nsmgr.example:5001"));
    assert.throws(() => dialPolicy(["http"]), /want unix, unix:\/dir, tcp or tcp:<cidr>/);
    assert.throws(() => dialPolicy(["tcp:10.0.0.0/33"]), /prefix length/);
  });

  it("a pool refuses a URL its policy does not allow, naming it", () => {
    const pool = new ClientPool(undefined, {}, { allowDial: dialPolicy(["unix"]) });
    assert.throws(
      () => pool.get("tcp://169.254.169.254:80"),
      (e) =>
        code(e) === status.PERMISSION_DENIED &&
        (e as Error).message === "dial tcp://169.254.169.254:80: not allowed by this component's dial policy",
    );
    assert.throws(
      () => new ClientPool().get("dns:///example.org"),
      (e) => code(e) === status.PERMISSION_DENIED,
    );
    assert.equal(pool.size, 0);
  });
});

describe("ClientPool channels", () => {
  const servers: NsmServer[] = [];
  const urls: string[] = [];
  const seen: Metadata[] = [];

  before(async () => {
    for (let i = 0; i < 3; i++) {
      const store = new MonitorStore();
      const svc = monitorConnectionService(store, rootLogger, { authorize: false });
      const handler = svc.implementation.monitorConnections as (call: { metadata: Metadata }) => void;
      // Records the metadata each call arrived with, then serves it as usual.
      svc.implementation.monitorConnections = (call: { metadata: Metadata }) => {
        seen.push(call.metadata);
        handler(call);
      };
      const s = new NsmServer([svc]);
      servers.push(s);
      urls.push(await s.listen("tcp://127.0.0.1:0"));
    }
  });
  after(async () => {
    for (const s of servers) await s.stop(0);
  });

  const watch = (pool: ClientPool, url: string, md?: Metadata): ServerStream<ConnectionEvent> =>
    pool
      .get(url)
      .serverStream(
        MonitorConnectionService.monitorConnections,
        { pathSegments: [], networkServices: [] },
        md ? { metadata: md } : {},
      );

  /** Waits for the stream's first event (the snapshot): the call is under way. */
  const started = async (s: ServerStream<ConnectionEvent>): Promise<void> => {
    await s[Symbol.asyncIterator]().next();
  };

  it("keeps at most maxChannels: the least recently used idle channel makes room", () => {
    const pool = new ClientPool(undefined, {}, { maxChannels: 2 });
    try {
      const a = pool.get(urls[0]!);
      pool.get(urls[1]!);
      assert.equal(pool.get(urls[0]!), a, "a channel is reused");
      pool.get(urls[2]!); // urls[1] was used least recently
      assert.equal(pool.size, 2);
      assert.equal(pool.get(urls[0]!), a, "the recently used one stayed");
      assert.notEqual(pool.get(urls[1]!), undefined);
      assert.equal(pool.size, 2);
    } finally {
      pool.close();
    }
  });

  it("never evicts a channel that carries a call; all busy → RESOURCE_EXHAUSTED", async () => {
    const pool = new ClientPool(undefined, {}, { maxChannels: 2 });
    try {
      const s0 = watch(pool, urls[0]!);
      const s1 = watch(pool, urls[1]!);
      await started(s0);
      await started(s1);
      assert.throws(
        () => pool.get(urls[2]!),
        (e) =>
          code(e) === status.RESOURCE_EXHAUSTED &&
          /all 2 channels of this component carry calls/.test(String(e)),
      );
      s0.cancel();
      await new Promise((r) => setTimeout(r, 50));
      const c2 = pool.get(urls[2]!);
      assert.equal(pool.size, 2);
      const s2 = watch(pool, urls[2]!);
      await started(s2);
      // The busy one survived and still works.
      const again = watch(pool, urls[1]!);
      await started(again);
      assert.ok(c2);
      for (const s of [s1, s2, again]) s.cancel();
    } finally {
      pool.close();
    }
  });

  it("without callMetadata, a call without token carries the last token sent on the channel", async () => {
    const pool = new ClientPool();
    try {
      seen.length = 0;
      const before = watch(pool, urls[1]!);
      await started(before);
      const own = new Metadata();
      own.set(tokenKey, "request-token");
      const first = watch(pool, urls[1]!, own);
      await started(first);
      const after = watch(pool, urls[1]!);
      await started(after);
      assert.deepEqual(
        seen.map((m) => m.get(tokenKey)),
        [[], ["request-token"], ["request-token"]],
      );
      for (const s of [before, first, after]) s.cancel();
    } finally {
      pool.close();
    }
  });

  it("adds the component's token to calls that carry none, and leaves a call's own token alone", async () => {
    const pool = new ClientPool(
      undefined,
      {},
      {
        callMetadata: (url) => {
          const md = new Metadata();
          md.set(tokenKey, `component-token-for-${url}`);
          return Promise.resolve(md);
        },
      },
    );
    try {
      seen.length = 0;
      const plain = watch(pool, urls[0]!);
      await started(plain);
      const own = new Metadata();
      own.set(tokenKey, "call-token");
      const mine = watch(pool, urls[0]!, own);
      await started(mine);
      assert.deepEqual(
        seen.map((m) => m.get(tokenKey)),
        [[`component-token-for-${urls[0]}`], ["call-token"]],
      );
      plain.cancel();
      mine.cancel();
    } finally {
      pool.close();
    }
  });
});
