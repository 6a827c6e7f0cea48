// The client's namespace is untrusted input (a KERNEL mechanism's inodeURL, opened by the forwarder as root):
// only inode:// is accepted from callers; what is opened is opened non-blocking and must be a network
// namespace; the host's and the forwarder's own namespaces are refused. Namespaces and the odd files under
// /var/run/netns carry a per-run prefix and are deleted afterwards.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Connection, Mechanism } from "../../api/connection.js";
import { chain } from "../../core/chain.js";
import { CallContext, ConnectionMetadata } from "../../core/context.js";
import { rootLogger } from "../../core/log.js";
import { Dataplane, HOST_NETNS, NETNS_RUN_DIR, inodeUrlOf } from "../../dataplane/index.js";
import { kernelServer, trustNetnsUrl } from "../../networkservice/mechanisms/kernel.js";
import { emptyConnection } from "../../networkservice/updatepath/updatepath.js";
import { Netns, links } from "../../../test/helpers/netns.js";
import { KernelDataPlane } from "./kernel.js";

const root = process.getuid?.() === 0;

function ctx(): CallContext {
  const c = CallContext.background(rootLogger);
  c.connection = new ConnectionMetadata();
  return c;
}

const codeOf = (e: unknown): status | undefined => (e as { code?: status }).code;

/**
 * The host's namespace: PID 1's, or — where PID 1 cannot be inspected (no ptrace access to it, as in some
 * containers) — this test's own, which is the root namespace the test runs in.
 */
function hostNetnsUrl(): { url: string; refusal: RegExp } {
  try {
    return {
      url: inodeUrlOf(HOST_NETNS),
      refusal: /the host's network namespace, which callers may not use/,
    };
  } catch {
    return {
      url: inodeUrlOf("/proc/self/ns/net"),
      refusal: /own network namespace, which callers may not use/,
    };
  }
}

describe("kernel mechanism: inodeURL from callers", () => {
  const request = (inodeURL: string) => ({
    connection: {
      ...emptyConnection(),
      id: "c",
      networkService: "svc",
      mechanism: { cls: "LOCAL", type: "KERNEL", parameters: { name: "nsm-1", inodeURL } },
    },
    mechanismPreferences: [],
  });
  const hop = chain([kernelServer()]);

  it("accepts inode://<dev>/<ino>", async () => {
    const out = await hop.request(request("inode://4/4026532890"), ctx());
    assert.equal(out.mechanism!.parameters.inodeURL, "inode://4/4026532890");
  });

  it("refuses file:// (and anything else) with INVALID_ARGUMENT naming the parameter", async () => {
    for (const bad of ["file:///proc/1/ns/net", "file:///tmp/fifo", "/proc/1/ns/net", "inode://4/x"]) {
      await assert.rejects(
        hop.request(request(bad), ctx()),
        (e) =>
          codeOf(e) === status.INVALID_ARGUMENT &&
          (e as Error).message.startsWith("mechanism.parameters.inodeURL: ") &&
          (e as Error).message.includes(bad),
        bad,
      );
    }
  });

  it("accepts a file:// URL this process's own code marked trusted for the call", async () => {
    const c = ctx();
    trustNetnsUrl(c, "file:///proc/self/fd/42");
    const out = await hop.request(request("file:///proc/self/fd/42"), c);
    assert.equal(out.mechanism!.parameters.inodeURL, "file:///proc/self/fd/42");
    await assert.rejects(hop.request(request("file:///proc/self/fd/43"), c), /inodeURL/);
  });
});

describe("KernelDataPlane: the client's namespace", { skip: !root && "needs root" }, () => {
  const net = new Netns("nsmc");
  const tmp = mkdtempSync(join(tmpdir(), "nsm-clientns-"));
  let node: string, client: string, nse: string;
  let dp: KernelDataPlane;

  before(() => {
    node = net.add("node");
    client = net.add("pod");
    nse = net.add("nse");
    dp = new KernelDataPlane({
      owner: `${net.prefix}fwd`,
      tunnelIp: "198.18.61.1",
      nodeNetns: net.path(node),
    });
  });

  after(async () => {
    await dp?.settle();
    await dp?.close();
    net.cleanup();
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(net.leftovers(), []);
  });

  const legs = (
    clientInodeUrl: string,
    ifname: string,
  ): [{ conn: Connection; mechanism: Mechanism }, { conn: Connection; mechanism: Mechanism }] => {
    const conn: Connection = { ...emptyConnection(), id: `conn-${ifname}`, networkService: "svc" };
    return [
      {
        conn,
        mechanism: { cls: "LOCAL", type: "KERNEL", parameters: { name: ifname, inodeURL: clientInodeUrl } },
      },
      {
        conn,
        mechanism: {
          cls: "LOCAL",
          type: "KERNEL",
          parameters: { name: `${ifname}e`, inodeURL: inodeUrlOf(net.path(nse)) },
        },
      },
    ];
  };

  const refused = async (
    url: string,
    code: status,
    message: RegExp,
    c: CallContext = ctx(),
  ): Promise<void> => {
    const t0 = Date.now();
    await assert.rejects(dp.apply(...legs(url, "nsm-x"), c), (e) => {
      assert.equal(codeOf(e), code, (e as Error).message);
      assert.match((e as Error).message, /^incoming mechanism\.parameters\.inodeURL: /);
      assert.match((e as Error).message, message);
      return true;
    });
    assert.ok(Date.now() - t0 < 2000, `refused at once (${Date.now() - t0} ms)`);
    assert.deepEqual(links(client), []);
    assert.deepEqual(links(nse), []);
  };

  it("file:// → INVALID_ARGUMENT, nothing opened", async () => {
    await refused(
      `file://${HOST_NETNS}`,
      status.INVALID_ARGUMENT,
      /file:\/\/ URLs and paths are opened only/,
    );
    await refused(`file://${net.path(client)}`, status.INVALID_ARGUMENT, /inode:\/\/<dev>\/<ino>/);
  });

  it("a FIFO is refused without blocking (it would block the event loop if opened for reading)", async () => {
    // Not under /var/run/netns: `ip netns list` (other tests' clean-up checks) would block on it there.
    const fifo = join(tmp, "fifo");
    execFileSync("mkfifo", [fifo]);
    const c = ctx();
    trustNetnsUrl(c, `file://${fifo}`);
    await refused(`file://${fifo}`, status.INVALID_ARGUMENT, /is not a namespace file/, c);
    // By inode:// it is not even found: only named namespaces and processes' namespaces are looked at.
    await refused(inodeUrlOf(fifo), status.INVALID_ARGUMENT, /no network namespace with that inode/);
    // Nor through the data plane's own API, which also serves this process's code.
    const plain = new Dataplane();
    try {
      assert.throws(() => plain.netns(fifo), /EINVAL .*is not a namespace file/);
    } finally {
      plain.close();
    }
  });

  it("a regular file is refused: not on nsfs", async () => {
    // Under /var/run/netns, where inode:// resolution finds it; removed again at once.
    const file = join(NETNS_RUN_DIR, `${net.prefix}-file`);
    writeFileSync(file, "");
    try {
      await refused(inodeUrlOf(file), status.INVALID_ARGUMENT, /not a namespace file \(filesystem 0x/);
    } finally {
      unlinkSync(file);
    }
    const other = join(tmp, "not-a-netns");
    writeFileSync(other, "x");
    const c = ctx();
    trustNetnsUrl(c, `file://${other}`);
    await refused(`file://${other}`, status.INVALID_ARGUMENT, /not a namespace file \(filesystem 0x/, c);
  });

  it("another kind of namespace is refused (NS_GET_NSTYPE)", async () => {
    const c = ctx();
    trustNetnsUrl(c, "file:///proc/self/ns/uts");
    await refused(
      "file:///proc/self/ns/uts",
      status.INVALID_ARGUMENT,
      /another kind .* not a network namespace/,
      c,
    );
  });

  it("the host's, the forwarder's own and its node namespace → PERMISSION_DENIED", async () => {
    const host = hostNetnsUrl();
    await refused(host.url, status.PERMISSION_DENIED, host.refusal);
    await refused(inodeUrlOf("/proc/self/ns/net"), status.PERMISSION_DENIED, /callers may not use/);
    await refused(inodeUrlOf(net.path(node)), status.PERMISSION_DENIED, /a namespace of this component/);
    // A trusted path does not make the forwarder's own namespace acceptable either.
    const c = ctx();
    trustNetnsUrl(c, "file:///proc/self/ns/net");
    await refused("file:///proc/self/ns/net", status.PERMISSION_DENIED, /callers may not use/, c);
  });

  it("allowHostNetns lets a reference name the host's namespace", () => {
    const plain = new Dataplane();
    try {
      const host = hostNetnsUrl();
      assert.throws(() => plain.clientNetns(host.url), host.refusal);
      const h = plain.clientNetns(host.url, { allowHostNetns: true });
      assert.equal(h.inodeUrl, host.url);
    } finally {
      plain.close();
    }
  });

  it("a real pod namespace named by inode:// is accepted: the veth pair is built", async () => {
    const c = ctx();
    const [incoming, outgoing] = legs(inodeUrlOf(net.path(client)), "nsm-ok");
    await dp.apply(incoming, outgoing, c);
    assert.deepEqual(links(client), ["nsm-ok"]);
    assert.deepEqual(links(nse), ["nsm-oke"]);
    await dp.release(incoming, outgoing, c);
    await dp.settle();
    assert.deepEqual(links(client), []);
  });
});
