// Real kernel tests of the data plane. Every namespace is created here with a per-run prefix and deleted in
// `after` (and checked by the last test); links live only inside those namespaces, never in the root one.
// Addresses: underlay 198.18.0.0/15, point-to-point 169.254.0.0/16 and 100.64.0.0/10, external 203.0.113.0/24.
// iproute2 is used only to build fixtures and to cross-check what the data plane did.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Dataplane,
  DataplaneError,
  inodeUrlOf,
  listLinksByAliasPrefix,
  resolveInodeUrl,
  type NetnsHandle,
} from "./index.js";

const isRoot = process.getuid?.() === 0;
const P = `nsmdp${randomBytes(2).toString("hex")}`; // 9 chars: leaves 6 for link suffixes
const made: string[] = [];

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function addNs(suffix: string): string {
  const name = `${P}-${suffix}`;
  sh("ip", "netns", "add", name);
  made.push(name);
  sh("ip", "-n", name, "link", "set", "lo", "up");
  return name;
}

function nsPath(name: string): string {
  return `/var/run/netns/${name}`;
}

/** `ip -j …` inside a namespace, parsed. */
function ipj<T>(ns: string | undefined, ...args: string[]): T {
  const nsArgs = ns === undefined ? [] : ["-n", ns];
  return JSON.parse(sh("ip", "-j", ...nsArgs, ...args) || "[]") as T;
}

interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  address?: string;
  ifalias?: string;
  flags: string[];
  master?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

function ping(ns: string, ip: string): boolean {
  try {
    sh("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-q", ip);
    return true;
  } catch {
    return false;
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<DataplaneError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DataplaneError, `expected DataplaneError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected ${code}`);
}

function leftovers(): { namespaces: string[]; rootLinks: string[] } {
  const namespaces = sh("ip", "netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(P));
  const rootLinks = ipj<IpLink[]>(undefined, "link", "show")
    .map((l) => l.ifname)
    .filter((n) => n.startsWith(P));
  return { namespaces, rootLinks };
}

let dp: Dataplane;

function cleanup(): void {
  dp?.close(); // handles pin namespaces: close them first so `ip netns del` really frees them
  for (const name of made.splice(0)) {
    try {
      sh("ip", "netns", "del", name);
    } catch {
      // already gone
    }
  }
}

describe(
  "dataplane (real kernel, namespaces with prefix " + P + ")",
  { skip: !isRoot && "needs root" },
  () => {
    let a: NetnsHandle;
    let b: NetnsHandle;
    let nsA: string;
    let nsB: string;

    before(() => {
      dp = new Dataplane();
      nsA = addNs("a");
      nsB = addNs("b");
      a = dp.netns(nsPath(nsA));
      b = dp.netns(nsPath(nsB));
    });
    after(cleanup);

    it("creates a veth pair across two namespaces (peer made in place); addresses; ping works", async () => {
      await a.link.createVeth({
        name: `${P}-va`,
        up: true,
        peer: { name: `${P}-vb`, netns: b, up: true },
      });
      await a.addr.add(`${P}-va`, "169.254.1.1/30");
      await b.addr.add(`${P}-vb`, "169.254.1.2/30");
      assert.ok(ping(nsA, "169.254.1.2"), "ping a → b");
      assert.ok(ping(nsB, "169.254.1.1"), "ping b → a");
      // The peer never existed in namespace a.
      assert.equal(await a.link.find(`${P}-vb`), undefined);
      const [detail] = ipj<IpLink[]>(nsB, "-d", "link", "show", `${P}-vb`);
      assert.equal(detail?.linkinfo?.info_kind, "veth");
    });

    it("newNetns: a private namespace that goes, with its interfaces, when its handle closes", async () => {
      const priv = dp.newNetns();
      assert.notEqual(priv.inodeUrl, dp.netns().inodeUrl);
      assert.deepEqual(
        (await priv.link.list()).map((l) => l.name),
        ["lo"],
      );
      await a.link.createVeth({ name: `${P}-pa`, up: true, peer: { name: `${P}-pb`, netns: priv } });
      assert.ok(await a.link.find(`${P}-pa`));
      priv.close();
      // The namespace is freed asynchronously once its last reference is gone; the veth goes with it.
      const t0 = Date.now();
      while ((await a.link.find(`${P}-pa`)) && Date.now() - t0 < 5000) await sleep(50);
      assert.equal(await a.link.find(`${P}-pa`), undefined);
    });

    it("proxy neighbours: added (v4 and v6) idempotently, listed by ip, deleted", async () => {
      await a.link.createBridge({ name: `${P}-px`, up: true });
      const dev = `${P}-px`;
      for (const ip of ["198.51.100.77", "2001:db8:77::7"]) {
        await a.neigh.proxyAdd({ dev, ip });
        await a.neigh.proxyAdd({ dev, ip });
      }
      const shown =
        sh("ip", "-n", nsA, "neigh", "show", "proxy") + sh("ip", "-n", nsA, "-6", "neigh", "show", "proxy");
      assert.match(shown, /198\.51\.100\.77 dev/);
      assert.match(shown, /2001:db8:77::7 dev/);
      for (const ip of ["198.51.100.77", "2001:db8:77::7"]) await a.neigh.proxyDel({ dev, ip });
      await a.neigh.proxyDel({ dev, ip: "198.51.100.77" }, { missingOk: true });
      assert.doesNotMatch(sh("ip", "-n", nsA, "neigh", "show", "proxy"), /198\.51\.100\.77/);
      await a.link.delete(dev);
    });

    it("source rules: added idempotently (v4 and v6, tables above 255 too), shown by ip, deleted", async () => {
      const specs = [
        { from: "198.51.100.7/32", table: 100, priority: 100 },
        { from: "2001:db8:7::/64", table: 1000, priority: 200 },
      ];
      for (const r of specs) {
        await a.rule.ensure(r);
        await a.rule.ensure(r);
      }
      const shown = sh("ip", "-n", nsA, "rule", "show") + sh("ip", "-n", nsA, "-6", "rule", "show");
      assert.equal(shown.match(/from 198\.51\.100\.7 lookup 100/g)?.length, 1, shown);
      assert.match(shown, /^200:\s+from 2001:db8:7::\/64 lookup 1000/m);
      for (const r of specs) await a.rule.del(r);
      await a.rule.del(specs[0]!, { missingOk: true });
      await assert.rejects(a.rule.ensure({ from: "nope", table: 1, priority: 1 }), /not a prefix/);
      assert.doesNotMatch(sh("ip", "-n", nsA, "rule", "show"), /198\.51\.100\.7/);
    });

    it("reads links back: kind, mtu, mac, state, peer index, netns id", async () => {
      const va = await a.link.get(`${P}-va`);
      const vb = await b.link.get(`${P}-vb`);
      const [ipA] = ipj<IpLink[]>(nsA, "link", "show", `${P}-va`);
      assert.equal(va.kind, "veth");
      assert.equal(va.index, ipA?.ifindex);
      assert.equal(va.mtu, ipA?.mtu);
      assert.equal(va.mac, ipA?.address);
      assert.equal(va.up, true);
      assert.equal(va.parentIndex, vb.index, "IFLA_LINK names the peer's index");
      assert.equal(typeof va.linkNetnsId, "number", "peer lives in another namespace");
      assert.deepEqual(await a.link.get(va.index), va, "get by index = get by name");
      const names = (await a.link.list()).map((l) => l.name);
      assert.deepEqual(names.sort(), ["lo", `${P}-va`].sort());
    });

    it("sets MTU, MAC, alias (and clears it), down/up, and renames", async () => {
      const name = `${P}-va`;
      await a.link.setMtu(name, 1400);
      await a.link.setMac(name, "02:00:5e:00:53:01");
      await a.link.setAlias(name, "nsm-conn-1234");
      let l = await a.link.get(name);
      assert.equal(l.mtu, 1400);
      assert.equal(l.mac, "02:00:5e:00:53:01");
      assert.equal(l.alias, "nsm-conn-1234");
      const [ip] = ipj<IpLink[]>(nsA, "link", "show", name);
      assert.equal(ip?.ifalias, "nsm-conn-1234");
      assert.equal(ip?.mtu, 1400);
      await a.link.setAlias(name, "");
      assert.equal((await a.link.get(name)).alias, undefined);

      await a.link.setDown(name);
      assert.equal((await a.link.get(name)).up, false);
      await a.link.rename(name, `${P}-ra`);
      l = await a.link.get(`${P}-ra`);
      assert.equal(l.up, false);
      await a.link.set(`${P}-ra`, { name, up: true }); // rename back and up in one request
      l = await a.link.get(name);
      assert.equal(l.up, true);
      assert.equal(await a.link.find(`${P}-ra`), undefined);
      assert.ok(ping(nsA, "169.254.1.2"), "still pings after the changes");
    });

    it("adds addresses idempotently, lists and deletes them, IPv4 and IPv6", async () => {
      const dev = `${P}-va`;
      await a.addr.add(dev, "169.254.1.1/30"); // again: no error
      await a.addr.add(dev, "fd00:64::1/64");
      await a.addr.add(dev, "fd00:64::1/64");
      const mine = await a.addr.list(dev);
      assert.ok(mine.some((x) => x.cidr === "169.254.1.1/30" && x.family === 4));
      assert.ok(mine.some((x) => x.cidr === "fd00:64::1/64" && x.family === 6));
      assert.equal(mine.filter((x) => x.cidr === "169.254.1.1/30").length, 1);
      const v6 = await a.addr.list(dev, 6);
      assert.ok(v6.every((x) => x.family === 6));
      const ipAddrs = ipj<{ addr_info: { local: string; prefixlen: number }[] }[]>(nsA, "addr", "show", dev);
      assert.ok(ipAddrs[0]?.addr_info.some((x) => x.local === "fd00:64::1" && x.prefixlen === 64));
      await a.addr.del(dev, "fd00:64::1/64");
      assert.ok(!(await a.addr.list(dev, 6)).some((x) => x.address === "fd00:64::1"));
      await rejectsWith(a.addr.del(dev, "fd00:64::1/64"), "EADDRNOTAVAIL");
      await a.addr.del(dev, "fd00:64::1/64", { missingOk: true });
    });

    it("refuses an address another interface already has (EADDRINUSE naming it) unless allowed", async () => {
      await a.link.createBridge({ name: `${P}-br`, up: true });
      const err = await rejectsWith(a.addr.add(`${P}-br`, "169.254.1.1/30"), "EADDRINUSE");
      assert.match(err.message, new RegExp(`already on ${P}-va`));
      assert.equal((await a.addr.list(`${P}-br`, 4)).length, 0);
      await a.addr.add(`${P}-br`, "169.254.1.1/32", { allowDuplicate: true });
      assert.equal((await a.addr.list(`${P}-br`, 4)).length, 1);
      // IPv6 link-local addresses belong to their link: the same one on two links is fine.
      await a.addr.add(`${P}-br`, "fe80::99/64");
      await a.addr.add(`${P}-va`, "fe80::99/64");
      await a.addr.del(`${P}-va`, "fe80::99/64");
      await a.link.delete(`${P}-br`);
    });

    it("adds, replaces, lists and deletes routes with gateway, src, scope link and onlink; traffic follows", async () => {
      // An "external" address behind a, reachable from b through the veth.
      sh("ip", "-n", nsA, "addr", "add", "203.0.113.1/32", "dev", "lo");
      const dev = `${P}-vb`;
      await b.route.add({ dst: "203.0.113.0/24", gateway: "169.254.1.1", src: "169.254.1.2" });
      assert.ok(ping(nsB, "203.0.113.1"), "ping through the gateway route");
      await rejectsWith(
        b.route.add({ dst: "203.0.113.0/24", gateway: "169.254.1.1" }),
        "EEXIST",
        /route add 203\.0\.113\.0\/24 via 169\.254\.1\.1/,
      );
      await b.route.add({ dst: "198.51.100.7", dev }); // on-link host route: scope link by default
      await b.route.replace({
        dst: "203.0.113.0/24",
        gateway: "169.254.1.1",
        src: "169.254.1.2",
        metric: 10,
      });
      await b.route.add({ dst: "198.51.100.64/26", gateway: "100.64.9.9", dev, onlink: true });
      const routes = await b.route.list({ family: 4 });
      const ext = routes.find((r) => r.dst === "203.0.113.0/24" && r.metric === 10);
      assert.ok(ext, JSON.stringify(routes));
      assert.equal(ext.gateway, "169.254.1.1");
      assert.equal(ext.src, "169.254.1.2");
      const host = routes.find((r) => r.dst === "198.51.100.7/32");
      assert.equal(host?.scope, 253);
      assert.equal(host?.gateway, undefined);
      const onl = routes.find((r) => r.dst === "198.51.100.64/26");
      assert.equal(onl?.onlink, true);
      const ipRoutes = ipj<
        { dst: string; gateway?: string; prefsrc?: string; scope?: string; flags: string[] }[]
      >(nsB, "route", "show");
      assert.ok(ipRoutes.some((r) => r.dst === "203.0.113.0/24" && r.prefsrc === "169.254.1.2"));
      assert.ok(ipRoutes.some((r) => r.dst === "198.51.100.7" && r.scope === "link"));
      assert.ok(ipRoutes.some((r) => r.dst === "198.51.100.64/26" && r.flags.includes("onlink")));
      // A gateway that no connected route covers, without onlink, is refused by the kernel.
      await rejectsWith(b.route.add({ dst: "198.51.100.128/26", gateway: "100.64.9.9", dev }), "ENETUNREACH");
      await b.route.del({ dst: "198.51.100.64/26" });
      await b.route.del({ dst: "198.51.100.7", dev });
      await rejectsWith(b.route.del({ dst: "198.51.100.7" }), "ESRCH");
      await b.route.del({ dst: "198.51.100.7" }, { missingOk: true });
      assert.equal((await b.route.list({ dev })).filter((r) => r.dst.startsWith("198.51.100.")).length, 0);
      await rejectsWith(b.route.add({ dst: "10.1.2.3/8", dev }), "EINVAL", /host bits/);
    });

    it("adds, replaces, lists and deletes permanent neighbours", async () => {
      const dev = `${P}-vb`;
      await b.neigh.add({ dev, ip: "169.254.1.3", mac: "02:00:00:00:00:03" });
      await rejectsWith(b.neigh.add({ dev, ip: "169.254.1.3", mac: "02:00:00:00:00:04" }), "EEXIST");
      await b.neigh.replace({ dev, ip: "169.254.1.3", mac: "02:00:00:00:00:04" });
      await b.neigh.replace({ dev, ip: "fd00:64::3", mac: "02:00:00:00:00:06" });
      const n = (await b.neigh.list(dev)).find((x) => x.ip === "169.254.1.3");
      assert.equal(n?.mac, "02:00:00:00:00:04");
      assert.deepEqual(n?.state, ["permanent"]);
      const ipN = ipj<{ dst: string; lladdr: string; state: string[] }[]>(nsB, "neigh", "show", "dev", dev);
      assert.ok(ipN.some((x) => x.dst === "169.254.1.3" && x.lladdr === "02:00:00:00:00:04"));
      assert.ok(ipN.some((x) => x.dst === "fd00:64::3" && x.state.includes("PERMANENT")));
      await b.neigh.del({ dev, ip: "169.254.1.3" });
      await b.neigh.del({ dev, ip: "fd00:64::3" });
      await rejectsWith(b.neigh.del({ dev, ip: "169.254.1.3" }), "ENOENT");
      await b.neigh.del({ dev, ip: "169.254.1.3" }, { missingOk: true });
      assert.ok(!(await b.neigh.list(dev)).some((x) => x.ip === "169.254.1.3"));
    });

    it("moves a link into another namespace, renaming it there and bringing it up", async () => {
      await a.link.createVeth({ name: `${P}-m1`, peer: { name: `${P}-m2` } });
      await a.link.moveTo(`${P}-m2`, b, { name: `${P}-mv`, up: true });
      assert.equal(await a.link.find(`${P}-m2`), undefined);
      const moved = await b.link.get(`${P}-mv`);
      assert.equal(moved.up, true);
      assert.equal(moved.kind, "veth");
      // Into a namespace that already has the name: refused, link stays where it was.
      await a.link.createVeth({ name: `${P}-m3`, peer: { name: `${P}-m4` } });
      await rejectsWith(a.link.moveTo(`${P}-m4`, b, { name: `${P}-mv` }), "EEXIST");
      assert.ok(await a.link.find(`${P}-m4`));
      await a.link.delete(`${P}-m1`);
      await a.link.delete(`${P}-m3`);
      assert.equal(await b.link.find(`${P}-mv`), undefined, "deleting one end deletes the moved peer too");
    });

    it("creates bridges and enslaves / releases ports", async () => {
      await a.link.createBridge({ name: `${P}-br`, up: true, mtu: 1450 });
      await a.link.createVeth({ name: `${P}-p1`, master: `${P}-br`, up: true, peer: { name: `${P}-p2` } });
      const br = await a.link.get(`${P}-br`);
      assert.equal(br.kind, "bridge");
      assert.equal((await a.link.get(`${P}-p1`)).masterIndex, br.index);
      await a.link.setMaster(`${P}-p2`, `${P}-br`);
      const [ipP2] = ipj<IpLink[]>(nsA, "link", "show", `${P}-p2`);
      assert.equal(ipP2?.master, `${P}-br`);
      await a.link.setMaster(`${P}-p2`, null);
      assert.equal((await a.link.get(`${P}-p2`)).masterIndex, undefined);
      await a.link.delete(`${P}-p1`);
      await a.link.delete(`${P}-br`);
    });

    it("VXLAN between two node namespaces over a veth underlay carries pod-to-pod pings (bridged, and moved into the pod)", async () => {
      const [n1, n2, p1, p2, p3, p4] = ["n1", "n2", "p1", "p2", "p3", "p4"].map(addNs) as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const [node1, node2, pod1, pod2, pod3, pod4] = [n1, n2, p1, p2, p3, p4].map((n) =>
        dp.netns(nsPath(n)),
      ) as [NetnsHandle, NetnsHandle, NetnsHandle, NetnsHandle, NetnsHandle, NetnsHandle];
      // Underlay: node1 198.18.0.1 <-> node2 198.18.0.2.
      await node1.link.createVeth({
        name: `${P}-u1`,
        up: true,
        peer: { name: `${P}-u2`, netns: node2, up: true },
      });
      await node1.addr.add(`${P}-u1`, "198.18.0.1/24");
      await node2.addr.add(`${P}-u2`, "198.18.0.2/24");

      // (1) L2: pod veth bridged to a VXLAN in each node.
      for (const [node, pod, local, remote, podIp, i] of [
        [node1, pod1, "198.18.0.1", "198.18.0.2", "100.64.0.1/24", "1"],
        [node2, pod2, "198.18.0.2", "198.18.0.1", "100.64.0.2/24", "2"],
      ] as const) {
        await node.link.createBridge({ name: `${P}-br${i}`, up: true });
        await node.link.createVxlan({
          name: `${P}-x${i}`,
          vni: 100,
          local,
          remote,
          underlay: `${P}-u${i}`,
          master: `${P}-br${i}`,
          up: true,
          alias: `nsm-vx-${i}`,
        });
        await node.link.createVeth({
          name: `${P}-h${i}`,
          master: `${P}-br${i}`,
          up: true,
          peer: { name: "eth0", netns: pod, up: true },
        });
        await pod.addr.add("eth0", podIp);
      }
      const vx = await node1.link.get(`${P}-x1`);
      assert.deepEqual(vx.vxlan, {
        vni: 100,
        port: 4789,
        learning: false,
        remote: "198.18.0.2",
        local: "198.18.0.1",
        underlayIndex: (await node1.link.get(`${P}-u1`)).index,
      });
      const [ipVx] = ipj<IpLink[]>(n1, "-d", "link", "show", `${P}-x1`);
      assert.equal(ipVx?.linkinfo?.info_data?.["id"], 100);
      assert.equal(ipVx?.linkinfo?.info_data?.["learning"], false);
      assert.ok(ping(p1, "100.64.0.2"), "pod1 → pod2 over the bridged VXLAN");

      // (2) L3 as the kernel forwarder does it: VXLAN made in the node, moved into the pod, renamed there.
      for (const [node, pod, local, remote, podIp, i] of [
        [node1, pod3, "198.18.0.1", "198.18.0.2", "169.254.7.1/30", "3"],
        [node2, pod4, "198.18.0.2", "198.18.0.1", "169.254.7.2/30", "4"],
      ] as const) {
        await node.link.createVxlan({
          name: `${P}-x${i}`,
          vni: 101,
          local,
          remote,
          underlay: `${P}-u${i === "3" ? 1 : 2}`,
        });
        await node.link.moveTo(`${P}-x${i}`, pod, { name: "nsm0", up: true });
        await pod.addr.add("nsm0", podIp);
      }
      assert.equal((await pod3.link.get("nsm0")).kind, "vxlan");
      assert.ok(ping(p3, "169.254.7.2"), "pod3 → pod4 over a VXLAN device living in the pod");
      assert.equal((await listLinksByAliasPrefix(node1, "nsm-vx-")).map((l) => l.name).join(), `${P}-x1`);
    });

    it("resolves inode:// URLs to the same namespace and handle", async () => {
      const url = inodeUrlOf(nsPath(nsA));
      assert.match(url, /^inode:\/\/\d+\/\d+$/);
      assert.equal(a.inodeUrl, url);
      assert.equal(resolveInodeUrl(url), nsPath(nsA));
      assert.equal(dp.netns(url), a, "one cached handle per namespace, whatever it is called");
      assert.ok((await dp.netns(url).link.list()).some((l) => l.name === `${P}-va`));
      const self = inodeUrlOf("/proc/self/ns/net");
      assert.equal(inodeUrlOf(resolveInodeUrl(self)), self);
      // A pid path works too: a sleeping process inside namespace b.
      const pid = sh("ip", "netns", "exec", nsB, "sh", "-c", "sleep 5 >/dev/null 2>&1 & echo $!").trim();
      try {
        assert.equal(dp.netns(`/proc/${pid}/ns/net`), b);
      } finally {
        process.kill(Number(pid), "SIGTERM");
      }
      const bogus = url.replace(/\/\d+$/, "/1");
      assert.throws(
        () => dp.netns(bogus),
        (e: unknown) => e instanceof DataplaneError && e.code === "ENOENT",
      );
      assert.throws(
        () => resolveInodeUrl("inode://x/y"),
        (e: unknown) => e instanceof DataplaneError && e.code === "EINVAL",
      );
    });

    it("reports clear, typed errors", async () => {
      const long = `${P}-0123456789`;
      const e1 = await rejectsWith(
        a.link.createVeth({ name: long, peer: { name: `${P}-x` } }),
        "EINVAL",
        new RegExp(`link add veth ${long}.*"${long}" is ${long.length} bytes, the kernel allows at most 15`),
      );
      assert.equal(e1.errno, 22);
      assert.equal(e1.op, "link add veth");
      assert.equal(e1.object, long);
      await rejectsWith(a.link.createVeth({ name: `${P}-e1`, peer: { name: long } }), "EINVAL");
      assert.equal(await a.link.find(`${P}-e1`), undefined);

      assert.throws(
        () => dp.netns(`/var/run/netns/${P}-nope`),
        (e: unknown) =>
          e instanceof DataplaneError &&
          e.code === "ENOENT" &&
          e.message.includes(`/var/run/netns/${P}-nope`),
      );
      assert.throws(
        () => dp.netns("/etc/hostname"),
        (e: unknown) => e instanceof DataplaneError && e.code === "EINVAL",
      );

      const dup = await rejectsWith(
        a.link.createVeth({ name: `${P}-va`, peer: { name: `${P}-zz` } }),
        "EEXIST",
        new RegExp(`^link add veth ${P}-va \\(netns /var/run/netns/${nsA}\\): EEXIST`),
      );
      assert.equal(dup.errno, 17);
      await rejectsWith(a.link.get(`${P}-gone`), "ENODEV", /link get .*-gone/);
      await rejectsWith(a.link.delete(`${P}-gone`), "ENODEV");
      await a.link.delete(`${P}-gone`, { missingOk: true });
      await rejectsWith(a.addr.add(`${P}-va`, "300.1.1.1/24"), "EINVAL");
      await rejectsWith(a.link.setMtu(`${P}-va`, 20), "EINVAL", /MTU 20/);
      await rejectsWith(a.link.setMac(`${P}-va`, "01:00:5e:00:00:01"), "EADDRNOTAVAIL"); // multicast MAC
      await rejectsWith(a.link.createVxlan({ name: `${P}-vx`, vni: 1 << 24 }), "EINVAL", /VNI/);
    });

    it("leaves no partial state when a multi-step operation fails", async () => {
      // (1) Peer name taken in the peer namespace: the kernel refuses the whole request; no local end.
      await rejectsWith(
        a.link.createVeth({ name: `${P}-f1`, peer: { name: `${P}-vb`, netns: b } }),
        "EEXIST",
      );
      assert.equal(await a.link.find(`${P}-f1`), undefined);

      // (2) Master that does not exist: nothing created.
      await rejectsWith(
        a.link.createVxlan({ name: `${P}-f2`, vni: 7, master: `${P}-nobr` }),
        "ENODEV",
        /master/,
      );
      assert.equal(await a.link.find(`${P}-f2`), undefined);

      // (3) A follow-up step (peer alias + up, in the peer namespace) fails after the pair exists: the pair is
      // deleted again, in both namespaces.
      const sock = b.rtnl;
      const real = sock.request.bind(sock);
      sock.request = (type, build, flags, ctx) =>
        ctx.op.startsWith("link set")
          ? Promise.reject(DataplaneError.of(ctx, "EIO", "injected failure"))
          : real(type, build, flags, ctx);
      try {
        await rejectsWith(
          a.link.createVeth({
            name: `${P}-f3`,
            alias: "x",
            peer: { name: `${P}-f4`, netns: b, alias: "y", up: true },
          }),
          "EIO",
          /injected/,
        );
      } finally {
        sock.request = real;
      }
      assert.equal(await a.link.find(`${P}-f3`), undefined);
      assert.equal(await b.link.find(`${P}-f4`), undefined);
      assert.equal(ipj<IpLink[]>(nsB, "link", "show").filter((l) => l.ifname === `${P}-f4`).length, 0);
    });

    it("is safe under concurrent requests on one socket", async () => {
      const names = Array.from({ length: 12 }, (_, i) => `${P}-c${i.toString(16)}`);
      await Promise.all(
        names.map((n, i) =>
          a.link
            .createVeth({
              name: n,
              up: true,
              alias: `nsm-conc-${i}`,
              peer: { name: `${n}p`.slice(0, 15), netns: b },
            })
            .then(() => a.addr.add(n, `100.64.${i + 1}.1/24`)),
        ),
      );
      const [links, addrs, tagged] = await Promise.all([
        a.link.list(),
        a.addr.list(undefined, 4),
        a.link.listByAliasPrefix("nsm-conc-"),
      ]);
      for (const n of names)
        assert.ok(
          links.some((l) => l.name === n && l.up),
          n,
        );
      assert.equal(addrs.filter((x) => x.address.startsWith("100.64.")).length, names.length);
      assert.equal(tagged.length, names.length);
      await Promise.all(names.map((n) => a.link.delete(n)));
      assert.equal((await a.link.listByAliasPrefix("nsm-conc-")).length, 0);
    });

    it("fails operations on a closed handle with EBADF", async () => {
      const ns = addNs("z");
      const h = dp.netns(nsPath(ns));
      h.close();
      await rejectsWith(h.link.list(), "EBADF");
      assert.notEqual(dp.netns(nsPath(ns)), h, "a new handle after close");
    });

    it("leaves no namespace or link with the run prefix behind", () => {
      cleanup();
      assert.deepEqual(leftovers(), { namespaces: [], rootLinks: [] });
    });
  },
);
