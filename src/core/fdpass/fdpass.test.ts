// Descriptor passing on unix sockets (upstream grpcfd): a client queues a descriptor with its call and the
// server finds it by inode URL on the connection the call came on; the same the other way with a response;
// nothing crosses to another connection; plaintext and mTLS alike; descriptors are closed with the connection.
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NetworkServiceService, type NetworkServiceRequest } from "../../api/networkservice.js";
import type { Connection } from "../../api/connection.js";
import { emptyConnection } from "../../networkservice/updatepath/updatepath.js";
import { createSecurity, type Security } from "../../components/security.js";
import { TrustDomainCa } from "../../security/ca.js";
import { GrpcClient } from "../client.js";
import type { CallContext } from "../context.js";
import { NsmServer } from "../grpc.js";
import { unaryHandler } from "../handlers.js";
import { rootLogger } from "../log.js";
import { closeFd, inodeUrlOfFd, openToSend } from "./files.js";

const openFds = (): number => readdirSync("/proc/self/fd").length;

/** A NetworkService whose Request answers with what came with it: the inode URL it was asked to receive. */
function echoServer(credentials?: ReturnType<Security["serverCredentials"]>): NsmServer {
  const handle = async (req: NetworkServiceRequest, ctx: CallContext): Promise<Connection> => {
    const want = req.connection!.labels["want"]!;
    const conn = { ...req.connection!, labels: { ...req.connection!.labels } };
    if (!ctx.fds) {
      conn.labels["got"] = "no-fds";
      return conn;
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), Number(req.connection!.labels["waitMs"] ?? "2000"));
    try {
      const fd = await ctx.fds.recvFd(want, ac.signal);
      conn.labels["got"] = inodeUrlOfFd(fd);
      closeFd(fd);
      const back = req.connection!.labels["sendBack"];
      if (back) {
        const f = openToSend(back);
        ctx.fds.sendFd(f.fd);
        closeFd(f.fd);
        conn.labels["sent"] = f.inodeUrl;
      }
    } catch (err) {
      conn.labels["got"] = `error: ${(err as Error).message}`;
    } finally {
      clearTimeout(timer);
    }
    return conn;
  };
  return new NsmServer(
    [
      {
        name: "networkservice.NetworkService",
        definition: NetworkServiceService,
        implementation: {
          request: unaryHandler(rootLogger, "Request", handle),
          close: unaryHandler(rootLogger, "Close", () => Promise.resolve({})),
        },
      },
    ],
    credentials,
  );
}

const request = (labels: Record<string, string>): NetworkServiceRequest => ({
  connection: { ...emptyConnection(), id: "c", networkService: "s", labels },
  mechanismPreferences: [],
});

for (const mode of ["plaintext", "mTLS"] as const) {
  describe(`fd passing on unix sockets (${mode})`, () => {
    const dir = mkdtempSync(join(tmpdir(), "nsm-fdpass-"));
    let srv: NsmServer;
    let url: string;
    let server: Security | undefined;
    let client: Security | undefined;
    const clients: GrpcClient[] = [];
    const dial = (): GrpcClient => {
      const c = client
        ? new GrpcClient(url, client.channelOptions(), client.channelCredentials(url))
        : new GrpcClient(url);
      clients.push(c);
      return c;
    };

    before(async () => {
      if (mode === "mTLS") {
        const ca = await TrustDomainCa.create("fdpass.test");
        const id = async (name: string): Promise<Security> =>
          createSecurity({ name, files: await ca.writeFiles(dir, name, `spiffe://fdpass.test/${name}`) });
        server = await id("server");
        client = await id("client");
      }
      srv = echoServer(server?.serverCredentials());
      url = await srv.listen(`unix://${join(dir, "s.sock")}`);
    });
    after(async () => {
      for (const c of clients) c.close();
      await srv.stop(0);
      server?.close();
      client?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("a descriptor sent with the first call (before the channel connected) arrives by its inode URL", async () => {
      const c = dial();
      const f = openToSend("/proc/self/ns/net");
      c.fds!.sendFd(f.fd);
      closeFd(f.fd);
      const { response } = await c.unary(NetworkServiceService.request, request({ want: f.inodeUrl }));
      assert.equal(response.labels["got"], f.inodeUrl);
    });

    it("on a live channel too, and the server's descriptor comes back with the response", async () => {
      const c = dial();
      await c.waitReady(5000);
      const file = join(dir, "data");
      closeSync(openSync(file, "w"));
      const f = openToSend(file);
      c.fds!.sendFd(f.fd);
      closeFd(f.fd);
      const { response } = await c.unary(
        NetworkServiceService.request,
        request({ want: f.inodeUrl, sendBack: "/proc/self/ns/mnt" }),
      );
      assert.equal(response.labels["got"], f.inodeUrl);
      const back = await c.fds!.recvFd(response.labels["sent"]!, AbortSignal.timeout(2000));
      assert.equal(inodeUrlOfFd(back), response.labels["sent"]);
      closeFd(back);
    });

    it("a descriptor never sent is waited for until the deadline, with upstream's message", async () => {
      const c = dial();
      const { response } = await c.unary(
        NetworkServiceService.request,
        request({ want: "inode://4/1", waitMs: "200" }),
      );
      assert.equal(response.labels["got"], "error: timeout in recvfd waiting for inode://4/1");
    });

    it("a descriptor sent on one connection is not found on another", async () => {
      const a = dial();
      const b = dial();
      const f = openToSend("/proc/self/ns/uts");
      a.fds!.sendFd(f.fd);
      closeFd(f.fd);
      await a.unary(NetworkServiceService.request, request({ want: f.inodeUrl }));
      const { response } = await b.unary(
        NetworkServiceService.request,
        request({ want: f.inodeUrl, waitMs: "200" }),
      );
      assert.match(response.labels["got"]!, /^error: timeout in recvfd/);
    });

    it("closing the channel releases every descriptor it carried", async () => {
      const before = openFds();
      const c = dial();
      for (const ns of ["ipc", "pid", "cgroup"]) {
        const f = openToSend(`/proc/self/ns/${ns}`);
        c.fds!.sendFd(f.fd);
        closeFd(f.fd);
        await c.unary(NetworkServiceService.request, request({ want: f.inodeUrl }));
      }
      c.close();
      clients.pop();
      for (let i = 0; i < 50 && openFds() > before; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(openFds(), before);
    });

    it("a unix listener bound after a tcp one on the same credentials serves too", async () => {
      const both = echoServer(server?.serverCredentials());
      await both.listen("tcp://127.0.0.1:0");
      const unixUrl = await both.listen(`unix://${join(dir, "after-tcp.sock")}`);
      const c = client
        ? new GrpcClient(unixUrl, client.channelOptions(), client.channelCredentials(unixUrl))
        : new GrpcClient(unixUrl);
      try {
        const { response } = await c.unary(
          NetworkServiceService.request,
          request({ want: "none", waitMs: "50" }),
          {
            timeoutMs: 5000,
          },
        );
        // Answered (the call went through the handshake); no descriptor was sent.
        assert.match(response.labels["got"]!, /^error: timeout in recvfd/);
      } finally {
        c.close();
        await both.stop(0);
      }
    });
  });
}
