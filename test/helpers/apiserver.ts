// A throw-away Kubernetes API server for tests: etcd (Debian's etcd-server) and kube-apiserver from the cache
// scripts/k8s/build.sh fills, on 127.0.0.1 with free ports, a self-signed PKI and an admin kubeconfig
// (a client certificate in system:masters, so RBAC lets it do anything). No controllers and no nodes: enough
// for custom resources; `another()` adds a second apiserver on the same etcd, to take one down. `close()`
// kills everything and removes every file.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const k8sVersion = process.env.K8S_VERSION ?? "v1.34.4";
export const k8sBin = join(process.env.NSM_K8S_CACHE ?? "/var/cache/nsm-ts/k8s", k8sVersion, "bin");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const openssl = (dir: string, ...args: string[]): Promise<unknown> => run("openssl", args, { cwd: dir });

/** CA, serving certificate for 127.0.0.1/localhost, admin client certificate, service-account key pair (P-256: fast). */
async function makePki(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await Promise.all([
    openssl(
      dir,
      "req",
      "-x509",
      "-subj",
      "/CN=nsm-ts-test-ca",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
    ),
    openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"),
  ]);
  await openssl(dir, "ec", "-in", "sa.key", "-pubout", "-out", "sa.pub");
  const leaf = async (name: string, subj: string, ext: string): Promise<void> => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    await openssl(dir, "req", "-new", ...ec, "-keyout", `${name}.key`, "-subj", subj, "-out", `${name}.csr`);
    await openssl(
      dir,
      ...["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"],
      ...["-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`],
    );
  };
  await Promise.all([
    leaf(
      "apiserver",
      "/CN=kube-apiserver",
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    ),
    leaf(
      "admin",
      "/O=system:masters/CN=nsm-ts-test-admin",
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    ),
  ]);
}

function readyz(url: string, pki: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      `${url}/readyz`,
      {
        ca: readFileSync(join(pki, "ca.crt")),
        cert: readFileSync(join(pki, "admin.crt")),
        key: readFileSync(join(pki, "admin.key")),
        timeout: 2000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function stopProcess(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(t);
}

/** One kube-apiserver process on the shared etcd, stoppable and restartable on its port (outages). */
export interface ApiserverInstance {
  url: string;
  /** Admin kubeconfig for this instance (client certificate in system:masters). */
  kubeconfig: string;
  stop(): Promise<void>;
  /** kill -9: a crash, and no waiting for a graceful shutdown. */
  kill(): Promise<void>;
  /** Starts it again on the same port after `stop()` or `kill()`. */
  start(): Promise<void>;
}

export interface Apiserver extends ApiserverInstance {
  /** Runs kubectl from the same cache against the first instance; resolves with its stdout. */
  kubectl(...args: string[]): Promise<string>;
  /** Another kube-apiserver on the same etcd, as in an HA control plane. */
  another(): Promise<ApiserverInstance>;
  /** Stops everything and removes every file. */
  close(): Promise<void>;
}

/** Starts etcd + kube-apiserver; fails (never skips) when the Kubernetes binaries were not built. */
export async function startApiserver(timeoutMs = 30_000): Promise<Apiserver> {
  const apiserverBin = join(k8sBin, "kube-apiserver");
  if (!existsSync(apiserverBin))
    throw new Error(
      `${apiserverBin} is missing: run scripts/k8s/build.sh (builds Kubernetes ${k8sVersion} once)`,
    );
  const etcdBin = existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : "etcd";

  const dir = mkdtempSync(join(tmpdir(), "nsm-apiserver-"));
  // etcd fsyncs every write; on tmpfs that costs nothing.
  const etcdDir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "nsm-etcd-"));
  const procs = new Set<ChildProcess>();
  const killAll = (): void => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  };
  process.once("exit", killAll);
  let etcd: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    process.removeListener("exit", killAll);
    for (const p of procs) if (p !== etcd) await stopProcess(p);
    await stopProcess(etcd);
    rmSync(dir, { recursive: true, force: true });
    rmSync(etcdDir, { recursive: true, force: true });
  };

  const launch = (name: string, cmd: string, args: string[]): ChildProcess => {
    const log = openSync(join(dir, `${name}.log`), "a");
    const p = spawn(cmd, args, { stdio: ["ignore", log, log] });
    closeSync(log);
    p.on("error", () => undefined); // reported through the exit check while waiting
    procs.add(p);
    p.once("exit", () => procs.delete(p));
    return p;
  };
  const exitedOf = (p: ChildProcess, name: string): string | undefined =>
    p.exitCode !== null || p.signalCode !== null
      ? `${name} exited (${p.exitCode ?? p.signalCode}):\n${tail(join(dir, `${name}.log`))}`
      : undefined;

  let etcdClient = "";
  let instances = 0;
  const instance = async (): Promise<ApiserverInstance> => {
    const name = `kube-apiserver-${++instances}`;
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const kubeconfig = join(dir, `${name}.kubeconfig`);
    writeFileSync(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: test",
        `  cluster: {server: "${url}", certificate-authority: "${join(dir, "ca.crt")}"}`,
        "users:",
        "- name: admin",
        `  user: {client-certificate: "${join(dir, "admin.crt")}", client-key: "${join(dir, "admin.key")}"}`,
        "contexts:",
        "- name: test",
        "  context: {cluster: test, user: admin}",
        "current-context: test",
        "",
      ].join("\n"),
    );
    let proc: ChildProcess | undefined;
    const start = async (): Promise<void> => {
      proc = launch(name, apiserverBin, [
        `--etcd-servers=${etcdClient}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${port}`,
        `--tls-cert-file=${join(dir, "apiserver.crt")}`,
        `--tls-private-key-file=${join(dir, "apiserver.key")}`,
        `--client-ca-file=${join(dir, "ca.crt")}`,
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        `--service-account-key-file=${join(dir, "sa.pub")}`,
        `--service-account-signing-key-file=${join(dir, "sa.key")}`,
        "--service-cluster-ip-range=10.96.0.0/24",
        "--authorization-mode=RBAC",
        "--profiling=false",
      ]);
      const end = Date.now() + timeoutMs;
      for (;;) {
        const exited = exitedOf(etcd!, "etcd") ?? exitedOf(proc, name);
        if (exited) throw new Error(exited);
        if (await readyz(url, dir)) return;
        if (Date.now() > end)
          throw new Error(`${name} not ready in ${timeoutMs} ms:\n${tail(join(dir, `${name}.log`))}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await start();
    const kill = async (): Promise<void> => {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
      p.kill("SIGKILL");
      await exited;
    };
    return { url, kubeconfig, start, stop: () => stopProcess(proc), kill };
  };

  try {
    const [clientPort, peerPort] = await Promise.all([freePort(), freePort()]);
    await makePki(dir);
    etcdClient = `http://127.0.0.1:${clientPort}`;
    const etcdPeer = `http://127.0.0.1:${peerPort}`;
    etcd = launch("etcd", etcdBin, [
      ...["--name", "test", "--data-dir", etcdDir],
      ...["--listen-client-urls", etcdClient, "--advertise-client-urls", etcdClient],
      ...["--listen-peer-urls", etcdPeer, "--initial-advertise-peer-urls", etcdPeer],
      ...["--initial-cluster", `test=${etcdPeer}`, "--log-level", "warn"],
    ]);
    const first = await instance();
    return {
      ...first,
      async kubectl(...args: string[]): Promise<string> {
        const { stdout } = await run(join(k8sBin, "kubectl"), [`--kubeconfig=${first.kubeconfig}`, ...args]);
        return stdout;
      },
      another: instance,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
