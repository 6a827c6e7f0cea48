// The VNC client: wire format, errors that name method/path/status/text, retries on 502/503 and network
// errors, timeouts, and keystone re-authentication. Stub servers script the failures; the emulator answers
// the rest as the real API would.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { startVncServer, type RunningVncServer } from "../../tf-emulator/vnc/server.js";
import { VncClient, VncError } from "./vnc.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

/** An HTTP server answering with `handler`, recording every request. */
async function stub(
  handler: (req: Seen, res: ServerResponse, n: number) => void,
): Promise<{ url: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s: Seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      handler(s, res, seen.length);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const json = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void => {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
};
const text = (res: ServerResponse, status: number, body: string): void => {
  res.writeHead(status, { "Content-Type": "text/plain" });
  res.end(body);
};

async function caught(p: Promise<unknown>): Promise<VncError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VncError, `expected a VncError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the call to fail");
}

describe("VncClient against the emulator", () => {
  let s: RunningVncServer;
  let c: VncClient;
  before(async () => {
    s = await startVncServer({ port: 0 });
    c = new VncClient({ url: s.url });
  });
  after(async () => {
    c.close();
    await s.stop();
  });

  it("names method, path, status and the server's text in errors", async () => {
    const vm = await c.create("virtual-machine", { fq_name: ["err-vm"] });
    const err = await caught(c.create("virtual-machine", { fq_name: ["err-vm"] }));
    assert.equal(err.status, 409);
    assert.equal(err.method, "POST");
    assert.equal(err.path, "/virtual-machines");
    assert.equal(err.body, `['err-vm'] already exists with uuid: ${vm.uuid}`);
    assert.equal(
      err.message,
      `VNC POST /virtual-machines: 409 ['err-vm'] already exists with uuid: ${vm.uuid}`,
    );
    await c.delete("virtual-machine", vm.uuid);
  });

  it("reads, tries, deletes if present and maps ids", async () => {
    const vm = await c.create("virtual-machine", { fq_name: ["rd-vm"], server_type: "container" });
    assert.equal((await c.read("virtual-machine", vm.uuid)).server_type, "container");
    assert.equal((await c.readByFqName("virtual-machine", ["rd-vm"])).uuid, vm.uuid);
    assert.deepEqual(await c.idToFqName(vm.uuid), { type: "virtual-machine", fq_name: ["rd-vm"] });
    const [detail] = await c.list("virtual-machine", { obj_uuids: [vm.uuid], detail: true });
    assert.equal(detail?.server_type, "container");
    assert.equal(await c.deleteIfExists("virtual-machine", vm.uuid), true);
    assert.equal(await c.deleteIfExists("virtual-machine", vm.uuid), false);
    assert.equal(await c.tryRead("virtual-machine", vm.uuid), undefined);
    const err = await caught(c.delete("virtual-machine", vm.uuid));
    assert.equal(err.status, 404);
    assert.equal(err.message, `VNC DELETE /virtual-machine/${vm.uuid}: 404 ID ${vm.uuid} does not exist`);
  });

  it("keeps working after close() (new connections)", async () => {
    c.close();
    assert.ok((await c.homepage()).links.length > 0);
  });
});

describe("VncClient wire format", () => {
  it("sends JSON envelopes to plural, hyphenated paths with the query the server expects", async () => {
    const srv = await stub((req, res) => {
      if (req.method === "POST" && req.url === "/network-policys")
        return json(res, 200, { "network-policy": { uuid: "u1", fq_name: ["d", "p", "np"], href: "h" } });
      if (req.url.startsWith("/virtual-networks?"))
        return json(res, 200, {
          "virtual-networks": [{ "virtual-network": { uuid: "u2", fq_name: ["d", "p", "vn"], x: 1 } }],
        });
      if (req.url === "/ref-update") return json(res, 200, { uuid: "u1" });
      if (req.method === "PUT") return json(res, 200, { "network-policy": { uuid: "u1", href: "h" } });
      text(res, 404, "unexpected");
    });
    const c = new VncClient({ url: `${srv.url}/`, auth: { kind: "token", token: "static-token" } });
    try {
      const np = await c.create("network-policy", { fq_name: ["d", "p", "np"], parent_type: "project" });
      assert.equal(np.uuid, "u1");
      const post = srv.seen[0]!;
      assert.equal(post.headers["content-type"], "application/json");
      assert.equal(post.headers["x-auth-token"], "static-token");
      assert.deepEqual(JSON.parse(post.body), {
        "network-policy": { fq_name: ["d", "p", "np"], parent_type: "project" },
      });

      const vns = await c.list("virtual-network", {
        detail: true,
        parent_id: "p1",
        fields: ["network_ipam_refs", "routing_instances"],
        fq_names: [
          ["d", "p", "vn"],
          ["d", "p", "vn2"],
        ],
      });
      assert.deepEqual(vns, [{ uuid: "u2", fq_name: ["d", "p", "vn"], x: 1 }]);
      const q = new URL(srv.seen[1]!.url, "http://x").searchParams;
      assert.equal(q.get("detail"), "true");
      assert.equal(q.get("parent_id"), "p1");
      assert.equal(q.get("fields"), "network_ipam_refs,routing_instances");
      assert.equal(q.get("fq_names"), "d:p:vn,d:p:vn2");

      await c.refUpdate("virtual-router", "vr1", "virtual-machine", "vm1", "ADD");
      assert.deepEqual(JSON.parse(srv.seen[2]!.body), {
        type: "virtual-router",
        uuid: "vr1",
        "ref-type": "virtual-machine",
        "ref-uuid": "vm1",
        operation: "ADD",
        attr: null,
      });
      await c.update("network-policy", "u1", { display_name: "x" });
      assert.equal(srv.seen[3]!.url, "/network-policy/u1");
      assert.deepEqual(JSON.parse(srv.seen[3]!.body), { "network-policy": { display_name: "x" } });
    } finally {
      c.close();
      await srv.close();
    }
  });
});

describe("VncClient failures", () => {
  it("reports a closed port as status 0 with a clear message, after retrying", async () => {
    const probe = await stub(() => {});
    const url = probe.url;
    await probe.close();
    const c = new VncClient({ url, retries: 1 });
    const started = Date.now();
    const err = await caught(c.homepage());
    assert.equal(err.status, 0);
    assert.equal(err.body, "");
    assert.match(
      err.message,
      new RegExp(`^VNC GET /: no answer from ${url}: .*ECONNREFUSED.* \\(2 attempts\\)`),
    );
    assert.ok(Date.now() - started >= 90, "waited between attempts");
    c.close();
  });

  it("retries 503 and 502, then succeeds", async () => {
    const srv = await stub((_req, res, n) => {
      if (n === 1) return text(res, 503, "Service Unavailable");
      if (n === 2) return text(res, 502, "Bad Gateway");
      json(res, 200, { href: "h", links: [] });
    });
    const c = new VncClient({ url: srv.url });
    try {
      assert.deepEqual(await c.homepage(), { href: "h", links: [] });
      assert.equal(srv.seen.length, 3);
    } finally {
      c.close();
      await srv.close();
    }
  });

  it("gives up after the configured retries with the last status and text", async () => {
    const srv = await stub((_req, res) => text(res, 503, "api-server is restarting"));
    const c = new VncClient({ url: srv.url, retries: 2 });
    try {
      const err = await caught(c.read("virtual-network", "u1"));
      assert.equal(err.status, 503);
      assert.equal(err.message, "VNC GET /virtual-network/u1: 503 api-server is restarting");
      assert.equal(srv.seen.length, 3);
    } finally {
      c.close();
      await srv.close();
    }
  });

  it("does not retry other errors", async () => {
    const srv = await stub((_req, res) => text(res, 500, "boom"));
    const c = new VncClient({ url: srv.url });
    try {
      assert.equal((await caught(c.homepage())).status, 500);
      assert.equal(srv.seen.length, 1);
    } finally {
      c.close();
      await srv.close();
    }
  });

  it("times out a server that does not answer", async () => {
    const srv = await stub(() => {});
    const c = new VncClient({ url: srv.url, timeoutMs: 100, retries: 0 });
    try {
      const err = await caught(c.homepage());
      assert.equal(err.status, 0);
      assert.match(err.message, /timed out after 100 ms \(1 attempt\)/);
    } finally {
      c.close();
      await srv.close();
    }
  });
});

describe("VncClient keystone auth", () => {
  it("authenticates lazily once, re-authenticates once on 401, then fails", async () => {
    let valid = "t1";
    let issued = 0;
    const srv = await stub((req, res) => {
      if (req.url === "/identity/v3/auth/tokens") {
        issued++;
        const body = JSON.parse(req.body) as {
          auth: { identity: { password: { user: { name: string } } }; scope?: unknown };
        };
        assert.equal(body.auth.identity.password.user.name, "admin");
        assert.ok(body.auth.scope, "project scope sent");
        return json(res, 201, { token: {} }, { "X-Subject-Token": `t${issued}` });
      }
      if (req.headers["x-auth-token"] !== valid) return text(res, 401, "Authentication required");
      json(res, 200, { href: "h", links: [] });
    });
    const c = new VncClient({
      url: srv.url,
      auth: {
        kind: "keystone",
        url: `${srv.url}/identity/v3`,
        username: "admin",
        password: "pw",
        project: "admin",
      },
    });
    try {
      await Promise.all([c.homepage(), c.homepage(), c.homepage()]);
      assert.equal(issued, 1, "concurrent first calls share one token request");

      valid = "t2"; // the server forgot t1
      await c.homepage();
      assert.equal(issued, 2);

      valid = "never";
      const err = await caught(c.homepage());
      assert.equal(err.status, 401);
      assert.equal(err.message, "VNC GET /: 401 Authentication required");
      assert.equal(issued, 3, "one re-authentication, not a loop");
    } finally {
      c.close();
      await srv.close();
    }
  });

  it("reports a keystone refusal against the keystone URL", async () => {
    const srv = await stub((_req, res) =>
      json(res, 401, { error: { code: 401, message: "bad credentials" } }),
    );
    const c = new VncClient({
      url: srv.url,
      auth: { kind: "keystone", url: srv.url, username: "u", password: "p" },
    });
    try {
      const err = await caught(c.homepage());
      assert.equal(err.status, 401);
      assert.equal(err.path, `${srv.url}/v3/auth/tokens`);
      assert.match(err.message, /bad credentials/);
    } finally {
      c.close();
      await srv.close();
    }
  });
});
