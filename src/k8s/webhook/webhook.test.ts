// The admission webhook: review() decisions checked by applying their JSONPatch; the HTTPS server end to end
// with certificates from scripts/k8s/webhook-tls.sh (answer shape, bad bodies, certificate reload); the
// registration's requests against a fake API.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { parseServiceUrl } from "../../components/client.js";
import { checkSignedBy } from "./certs.js";
import { checkContainerName, parseEnvs, parseImage, type InjectConfig } from "./config.js";
import type { V1MutatingWebhookConfiguration } from "@kubernetes/client-node";
import {
  ownerAnnotation,
  register,
  unregister,
  webhookConfiguration,
  type WebhookConfigApi,
} from "./register.js";
import { decodeReview, review, ReviewDecodeError, type JsonPatchAdd } from "./review.js";
import { startWebhookServer, type WebhookServer } from "./server.js";

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);

const cfg: InjectConfig = {
  annotation: "networkservicemesh.io",
  containerName: "cmd-nsc",
  image: "localhost/nsm-ts:latest",
  envs: [],
};

function podReview(pod: unknown, request: Obj = {}): Obj {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "705ab4f5-6393-11e8-b7cc-42010a800002",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      operation: "CREATE",
      namespace: "demo",
      object: pod,
      ...request,
    },
  };
}

function pod(annotations?: Obj, spec?: Obj): Obj {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { generateName: "alpine-", namespace: "demo", ...(annotations ? { annotations } : {}) },
    spec: spec ?? { containers: [{ name: "alpine", image: "alpine", env: [{ name: "A", value: "1" }] }] },
  };
}

/** JSONPatch `add` (all the webhook emits), failing as RFC 6902 does when a parent is missing. */
function applyPatch(doc: Obj, base64: string): Obj {
  const ops = JSON.parse(Buffer.from(base64, "base64").toString("utf8")) as JsonPatchAdd[];
  const out = structuredClone(doc);
  for (const op of ops) {
    assert.equal(op.op, "add");
    const parts = op.path.split("/").slice(1);
    const last = parts.pop()!;
    let parent: unknown = out;
    for (const p of parts) {
      const next: unknown = Array.isArray(parent) ? parent[Number(p)] : isObj(parent) ? parent[p] : undefined;
      if (next === undefined) throw new Error(`patch ${op.path}: ${p} does not exist`);
      parent = next;
    }
    if (Array.isArray(parent)) {
      if (last === "-") parent.push(op.value);
      else parent.splice(Number(last), 0, op.value);
    } else if (isObj(parent)) parent[last] = op.value;
    else throw new Error(`patch ${op.path}: parent is not a container`);
  }
  return out;
}

const sidecarEnv = (services: string): unknown[] => [
  { name: "SPIFFE_ENDPOINT_SOCKET", value: "unix:///run/spire/sockets/agent.sock" },
  { name: "NSM_CONNECT_TO", value: "unix:///var/lib/networkservicemesh/nsm.io.sock" },
  { name: "NSM_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
  { name: "NSM_NETWORK_SERVICES", value: services },
];
const sidecarMounts = [
  { name: "cmd-nsc-nsm-socket", mountPath: "/var/lib/networkservicemesh", readOnly: true },
  { name: "cmd-nsc-spire-agent-socket", mountPath: "/run/spire/sockets", readOnly: true },
];
const sidecarVolumes = [
  {
    name: "cmd-nsc-nsm-socket",
    hostPath: { path: "/var/lib/networkservicemesh", type: "DirectoryOrCreate" },
  },
  { name: "cmd-nsc-spire-agent-socket", hostPath: { path: "/run/spire/sockets", type: "Directory" } },
];

function spec(o: Obj): Obj {
  assert.ok(isObj(o.spec));
  return o.spec;
}

describe("review", () => {
  it("injects the NSC sidecar and its volumes into an annotated pod", () => {
    const value = "kernel://icmp-responder/nsm-1";
    const p = pod(
      { [cfg.annotation]: value },
      {
        containers: [{ name: "alpine", image: "alpine", env: [{ name: "A", value: "1" }] }],
        volumes: [{ name: "data", emptyDir: {} }],
      },
    );
    const r = review(podReview(p), cfg);
    assert.deepEqual(r.outcome, {
      kind: "injected",
      services: [value],
      volumes: ["cmd-nsc-nsm-socket", "cmd-nsc-spire-agent-socket"],
    });
    assert.equal(r.namespace, "demo");
    assert.equal(r.pod, "alpine-*");
    const res = r.review.response;
    assert.equal(res.allowed, true);
    assert.equal(res.patchType, "JSONPatch");
    const patched = applyPatch(p, res.patch!);
    assert.deepEqual(spec(patched).containers, [
      { name: "alpine", image: "alpine", env: [{ name: "A", value: "1" }] },
      {
        name: "cmd-nsc",
        image: "localhost/nsm-ts:latest",
        imagePullPolicy: "IfNotPresent",
        args: ["nsc"],
        env: sidecarEnv(value),
        volumeMounts: sidecarMounts,
      },
    ]);
    assert.deepEqual(spec(patched).volumes, [{ name: "data", emptyDir: {} }, ...sidecarVolumes]);
  });

  it("adds whole arrays when the pod has no volumes (and its containers no env)", () => {
    const p = pod(
      { [cfg.annotation]: "icmp-responder" },
      { containers: [{ name: "app", image: "busybox" }] },
    );
    const res = review(podReview(p), cfg).review.response;
    const ops = JSON.parse(Buffer.from(res.patch!, "base64").toString()) as JsonPatchAdd[];
    assert.deepEqual(
      ops.map((o) => o.path),
      ["/spec/containers/-", "/spec/volumes"],
    );
    const patched = applyPatch(p, res.patch!);
    assert.deepEqual(spec(patched).volumes, sidecarVolumes);
    const containers = spec(patched).containers as Obj[];
    assert.deepEqual(containers[0], { name: "app", image: "busybox" });
    assert.equal(containers[1]!.name, "cmd-nsc");
  });

  it("adds the containers array when the pod has none (the apiserver rejects such a pod later)", () => {
    const p = pod({ [cfg.annotation]: "icmp-responder" }, {});
    const patched = applyPatch(p, review(podReview(p), cfg).review.response.patch!);
    assert.deepEqual(
      (spec(patched).containers as Obj[]).map((c) => c.name),
      ["cmd-nsc"],
    );
  });

  it("passes several services (with labels) through as NSM_NETWORK_SERVICES", () => {
    const value = "kernel://icmp-responder/nsm-1?app=x, kernel://vl3-service/nsm-2?app=x&tier=db,plain-name";
    const p = pod({ [cfg.annotation]: value });
    const r = review(podReview(p), cfg);
    assert.deepEqual(r.outcome.kind === "injected" && r.outcome.services, [
      "kernel://icmp-responder/nsm-1?app=x",
      "kernel://vl3-service/nsm-2?app=x&tier=db",
      "plain-name",
    ]);
    const c = (spec(applyPatch(p, r.review.response.patch!)).containers as Obj[])[1]!;
    assert.deepEqual(c.env, sidecarEnv(value));
  });

  it("admits pods without the annotation unchanged", () => {
    const r = review(podReview(pod({ other: "x" })), cfg);
    assert.deepEqual(r.review.response, { uid: "705ab4f5-6393-11e8-b7cc-42010a800002", allowed: true });
    assert.equal(r.outcome.kind, "skipped");
    assert.deepEqual(review(podReview(pod()), cfg).review.response.allowed, true);
  });

  it("admits an already injected pod unchanged", () => {
    const p = pod(
      { [cfg.annotation]: "icmp-responder" },
      {
        containers: [
          { name: "app", image: "a" },
          { name: "cmd-nsc", image: "b" },
        ],
      },
    );
    const r = review(podReview(p), cfg);
    assert.deepEqual(r.review.response, { uid: "705ab4f5-6393-11e8-b7cc-42010a800002", allowed: true });
    assert.match(r.outcome.kind === "skipped" ? r.outcome.reason : "", /already present/);
  });

  it("does not add a volume the pod already has by name, and still mounts it", () => {
    const own = { name: "cmd-nsc-nsm-socket", hostPath: { path: "/var/lib/networkservicemesh" } };
    const p = pod({ [cfg.annotation]: "icmp-responder" }, { containers: [{ name: "a" }], volumes: [own] });
    const r = review(podReview(p), cfg);
    assert.deepEqual(r.outcome.kind === "injected" && r.outcome.volumes, ["cmd-nsc-spire-agent-socket"]);
    const patched = applyPatch(p, r.review.response.patch!);
    assert.deepEqual(spec(patched).volumes, [own, sidecarVolumes[1]]);
  });

  it("rejects what `nsm nsc` would reject, naming the annotation and the entry", () => {
    for (const bad of [
      "http://icmp-responder/nsm-1",
      "kernel://",
      "kernel:/x",
      "kernel://%E0%A4%A/nsm-1",
      "a?b",
    ]) {
      const r = review(podReview(pod({ [cfg.annotation]: `kernel://ok/nsm-1,${bad}` })), cfg);
      const res = r.review.response;
      assert.equal(res.allowed, false, bad);
      assert.equal(res.status?.code, 400);
      assert.ok(res.status.message.includes("networkservicemesh.io"), res.status.message);
      assert.ok(res.status.message.includes(`"${bad}"`), res.status.message);
      assert.equal(res.patch, undefined);
      assert.equal(r.outcome.kind, "rejected");
    }
    for (const empty of ["", " , ,"]) {
      const res = review(podReview(pod({ [cfg.annotation]: empty })), cfg).review.response;
      assert.equal(res.allowed, false);
      assert.match(res.status!.message, /networkservicemesh\.io: lists no network service/);
    }
  });

  it("accepts exactly what parseServiceUrl accepts", () => {
    const entries = [
      "icmp-responder",
      "kernel://icmp-responder",
      "kernel://icmp-responder/",
      "kernel://icmp-responder/nsm-1?app=x&b=",
      "kernel://a%20b/nsm-1",
      "memif://icmp-responder/nsm-1",
      "kernel//x",
      "a b",
    ];
    for (const e of entries) {
      let parses = true;
      try {
        parseServiceUrl(e);
      } catch {
        parses = false;
      }
      const res = review(podReview(pod({ [cfg.annotation]: e })), cfg).review.response;
      assert.equal(res.allowed, parses, e);
    }
  });

  it("lets anything but a Pod CREATE through untouched", () => {
    const annotated = pod({ [cfg.annotation]: "icmp-responder" });
    for (const req of [
      { operation: "UPDATE" },
      { kind: { group: "apps", version: "v1", kind: "Deployment" } },
      { subResource: "ephemeralcontainers" },
    ]) {
      const res = review(podReview(annotated, req), cfg).review.response;
      assert.deepEqual(res, { uid: "705ab4f5-6393-11e8-b7cc-42010a800002", allowed: true });
    }
  });

  it("answers 400 inside the review when the object is no pod", () => {
    for (const object of [undefined, "x", { metadata: {} }, { metadata: {}, spec: { containers: "x" } }]) {
      const annotatedSpec = isObj(object)
        ? { ...object, metadata: { annotations: { [cfg.annotation]: "a" } } }
        : object;
      const res = review(podReview(annotatedSpec), cfg).review.response;
      assert.equal(res.allowed, false);
      assert.equal(res.status?.code, 400);
    }
  });

  it("refuses bodies that are no AdmissionReview v1 with a uid", () => {
    for (const body of [
      null,
      [],
      "x",
      { apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview", request: { uid: "u" } },
      { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" },
      { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { uid: 1 } },
    ])
      assert.throws(() => decodeReview(body), ReviewDecodeError, JSON.stringify(body));
  });

  it("NSM_ENVS override the defaults and come before the per-pod envs", () => {
    const envs = parseEnvs("NSM_LOG_LEVEL=TRACE, NSM_CONNECT_TO=tcp://10.0.0.1:5001,X=a=b");
    const p = pod({ [cfg.annotation]: "icmp-responder" });
    const patched = applyPatch(p, review(podReview(p), { ...cfg, envs }).review.response.patch!);
    assert.deepEqual((spec(patched).containers as Obj[])[1]!.env, [
      { name: "SPIFFE_ENDPOINT_SOCKET", value: "unix:///run/spire/sockets/agent.sock" },
      { name: "NSM_LOG_LEVEL", value: "TRACE" },
      { name: "NSM_CONNECT_TO", value: "tcp://10.0.0.1:5001" },
      { name: "X", value: "a=b" },
      { name: "NSM_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "NSM_NETWORK_SERVICES", value: "icmp-responder" },
    ]);
  });
});

describe("config", () => {
  it("parses and checks its settings", () => {
    assert.deepEqual(parseEnvs(undefined), []);
    assert.throws(() => parseEnvs("NOVALUE"), /NSM_ENVS: "NOVALUE" is not NAME=value/);
    assert.throws(() => parseEnvs("=x"), /not NAME=value/);
    assert.throws(() => parseEnvs("NSM_NAME=x"), /NSM_NAME is set per pod/);
    assert.equal(parseImage(" localhost/nsm-ts:latest "), "localhost/nsm-ts:latest");
    assert.throws(() => parseImage(undefined), /exactly one image/);
    assert.throws(() => parseImage("a,b"), /exactly one image.*got 2/);
    assert.equal(checkContainerName("cmd-nsc"), "cmd-nsc");
    assert.throws(() => checkContainerName("Cmd_NSC"), /DNS label/);
    assert.throws(() => checkContainerName("x".repeat(45)), /at most 44/);
  });
});

const script = new URL("../../../scripts/k8s/webhook-tls.sh", import.meta.url).pathname;
const serviceHost = "admission-webhook-svc.nsm-system.svc";

function makeTls(dir: string): { certFile: string; keyFile: string; caFile: string } {
  execFileSync("bash", [script, dir], { stdio: ["ignore", "pipe", "pipe"] });
  return { certFile: join(dir, "tls.crt"), keyFile: join(dir, "tls.key"), caFile: join(dir, "ca.crt") };
}

interface Reply {
  status: number;
  type: string | undefined;
  body: string;
  fingerprint: string;
}

function call(port: number, ca: string, method: string, path: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method, path, ca, servername: serviceHost, agent: false },
      (res) => {
        const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            type: res.headers["content-type"],
            body: Buffer.concat(chunks).toString(),
            fingerprint,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("webhook-tls.sh", () => {
  it("writes a CA and a serving certificate for the Service names, and keeps them on a second run", () => {
    const dir = mkdtempSync(join(tmpdir(), "nsm-webhook-tls-"));
    try {
      const f = makeTls(join(dir, "tls"));
      const first = readFileSync(f.certFile, "utf8");
      checkSignedBy(first, readFileSync(f.caFile, "utf8"), f.certFile, f.caFile);
      const text = execFileSync("openssl", ["x509", "-in", f.certFile, "-noout", "-text"]).toString();
      for (const n of ["admission-webhook-svc", "admission-webhook-svc.nsm-system", serviceHost])
        assert.match(text, new RegExp(`DNS:${n.replace(/\./g, "\\.")}(,|\\s|$)`));
      assert.match(text, /prime256v1|P-256/);
      makeTls(join(dir, "tls"));
      assert.equal(readFileSync(f.certFile, "utf8"), first);
      const other = makeTls(join(dir, "other"));
      assert.throws(
        () => checkSignedBy(first, readFileSync(other.caFile, "utf8"), f.certFile, other.caFile),
        /did not sign/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("HTTPS server", () => {
  let dir: string;
  let tls: { certFile: string; keyFile: string; caFile: string };
  let server: WebhookServer;
  const logs: Obj[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nsm-webhook-"));
    tls = makeTls(join(dir, "serving"));
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(JSON.parse(chunk.toString()) as Obj);
        cb();
      },
    });
    server = await startWebhookServer({
      listenOn: "127.0.0.1:0",
      certFile: tls.certFile,
      keyFile: tls.keyFile,
      inject: cfg,
      log: pino({ level: "debug" }, sink),
      reloadIntervalMs: 50,
    });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers an AdmissionReview as the apiserver requires", async () => {
    const ca = readFileSync(tls.caFile, "utf8");
    const p = pod({ [cfg.annotation]: "kernel://icmp-responder/nsm-1" });
    const r = await call(server.port, ca, "POST", "/mutate", JSON.stringify(podReview(p)));
    assert.equal(r.status, 200);
    assert.equal(r.type, "application/json");
    const answer = JSON.parse(r.body) as Obj;
    assert.deepEqual(Object.keys(answer).sort(), ["apiVersion", "kind", "response"]);
    assert.equal(answer.apiVersion, "admission.k8s.io/v1");
    assert.equal(answer.kind, "AdmissionReview");
    assert.ok(isObj(answer.response));
    assert.deepEqual(Object.keys(answer.response).sort(), ["allowed", "patch", "patchType", "uid"]);
    assert.equal(answer.response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patchType, "JSONPatch");
    const patched = applyPatch(p, answer.response.patch as string);
    assert.equal((spec(patched).containers as Obj[])[1]!.name, "cmd-nsc");

    const line = logs.find((l) => l.msg === "NSC injected");
    assert.ok(line, JSON.stringify(logs));
    assert.equal(line.namespace, "demo");
    assert.equal(line.pod, "alpine-*");
    assert.equal(line.container, "cmd-nsc");
    assert.deepEqual(line.services, ["kernel://icmp-responder/nsm-1"]);
  });

  it("answers a rejection inside a 200 review", async () => {
    const ca = readFileSync(tls.caFile, "utf8");
    const body = JSON.stringify(podReview(pod({ [cfg.annotation]: "http://x" })));
    const r = await call(server.port, ca, "POST", "/mutate", body);
    assert.equal(r.status, 200);
    const res = (JSON.parse(r.body) as { response: Obj }).response;
    assert.equal(res.allowed, false);
    assert.deepEqual(Object.keys(res.status as Obj).sort(), ["code", "message"]);
  });

  it("answers 400 to bodies it cannot decode, and serves the probes", async () => {
    const ca = readFileSync(tls.caFile, "utf8");
    for (const body of ["{not json", "", JSON.stringify({ apiVersion: "v1", kind: "Pod" })]) {
      const r = await call(server.port, ca, "POST", "/mutate", body);
      assert.equal(r.status, 400, body);
      assert.match((JSON.parse(r.body) as { error: string }).error, /cannot decode the AdmissionReview/);
    }
    assert.equal((await call(server.port, ca, "GET", "/mutate")).status, 405);
    assert.equal((await call(server.port, ca, "GET", "/nope")).status, 404);
    for (const probe of ["/ready", "/readyz", "/healthz"])
      assert.equal((await call(server.port, ca, "GET", probe)).status, 200, probe);
  });

  it("serves a rewritten certificate to new connections", async () => {
    const before = await call(server.port, readFileSync(tls.caFile, "utf8"), "GET", "/ready");
    const next = makeTls(join(dir, "next"));
    const nextCa = readFileSync(next.caFile, "utf8");
    // As a Secret update does: both files change (here one after the other, so a mismatched pair is seen).
    copyFileSync(next.certFile, tls.certFile);
    await new Promise((r) => setTimeout(r, 120));
    copyFileSync(next.keyFile, tls.keyFile);
    const deadline = Date.now() + 5_000;
    let after: Reply | undefined;
    while (Date.now() < deadline) {
      after = await call(server.port, nextCa, "GET", "/ready").catch(() => undefined);
      if (after) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(after, "the new certificate was not served within 5 s");
    assert.notEqual(after.fingerprint, before.fingerprint);
    assert.ok(logs.some((l) => l.msg === "serving certificate reloaded"));
    assert.ok(logs.some((l) => l.msg === "certificate files do not load; keeping the old"));
  });
});

describe("registration", () => {
  const reg = {
    name: "admission-webhook-k8s",
    annotation: "networkservicemesh.io",
    serviceName: "admission-webhook-svc",
    namespace: "nsm-system",
    path: "/mutate",
    caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    owner: "pod-a 1",
  };

  it("is owned by the webhook's namespace when its uid is known (deleting the namespace deletes it)", () => {
    assert.equal(webhookConfiguration(reg).metadata?.ownerReferences, undefined);
    const owned = webhookConfiguration({ ...reg, namespaceUid: "0f1e2d3c" });
    assert.deepEqual(owned.metadata?.ownerReferences, [
      { apiVersion: "v1", kind: "Namespace", name: "nsm-system", uid: "0f1e2d3c" },
    ]);
  });

  it("describes the webhook as upstream does, scoped to pods CREATE outside the mesh's namespaces", () => {
    const c = webhookConfiguration(reg);
    assert.equal(c.metadata?.name, "admission-webhook-k8s");
    assert.deepEqual(c.metadata?.annotations, { "networkservicemesh.io/admission-webhook-owner": "pod-a 1" });
    const w = c.webhooks![0]!;
    assert.equal(w.name, "admission-webhook-k8s.networkservicemesh.io");
    assert.deepEqual(w.admissionReviewVersions, ["v1"]);
    assert.equal(w.sideEffects, "None");
    assert.equal(w.failurePolicy, "Fail");
    assert.deepEqual(w.rules, [
      {
        operations: ["CREATE"],
        apiGroups: [""],
        apiVersions: ["v1"],
        resources: ["pods"],
        scope: "Namespaced",
      },
    ]);
    assert.deepEqual(w.namespaceSelector, {
      matchExpressions: [
        {
          key: "kubernetes.io/metadata.name",
          operator: "NotIn",
          values: ["kube-system", "spire", "nsm-system"],
        },
      ],
    });
    assert.deepEqual(w.clientConfig.service, {
      name: "admission-webhook-svc",
      namespace: "nsm-system",
      path: "/mutate",
      port: 443,
    });
    assert.equal(Buffer.from(w.clientConfig.caBundle!, "base64").toString(), reg.caPem);
  });

  /** As the apiserver: an update that changes nothing keeps the resourceVersion; deletes check preconditions. */
  function fakeApi(existing?: V1MutatingWebhookConfiguration, failDelete?: number) {
    const calls: string[] = [];
    let stored = existing;
    let rv = Number(existing?.metadata?.resourceVersion ?? 0);
    const content = (c: V1MutatingWebhookConfiguration | undefined): string =>
      JSON.stringify([c?.metadata?.annotations, c?.webhooks]);
    const api: WebhookConfigApi = {
      createMutatingWebhookConfiguration: ({ body }) => {
        calls.push("create");
        if (stored) return Promise.reject(Object.assign(new Error("exists"), { code: 409 }));
        stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++rv) } };
        return Promise.resolve(stored);
      },
      readMutatingWebhookConfiguration: () => {
        calls.push("read");
        return stored
          ? Promise.resolve(stored)
          : Promise.reject(Object.assign(new Error("nf"), { code: 404 }));
      },
      replaceMutatingWebhookConfiguration: ({ body }) => {
        calls.push(`replace at ${body.metadata?.resourceVersion}`);
        if (body.metadata?.resourceVersion !== stored?.metadata?.resourceVersion)
          return Promise.reject(Object.assign(new Error("conflict"), { code: 409 }));
        const next = content(body) === content(stored) ? rv : ++rv;
        stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(next) } };
        return Promise.resolve(stored);
      },
      deleteMutatingWebhookConfiguration: ({ body }) => {
        const want = body?.preconditions?.resourceVersion;
        calls.push(`delete if ${want}`);
        if (failDelete) return Promise.reject(Object.assign(new Error("boom"), { code: failDelete }));
        if (!stored) return Promise.reject(Object.assign(new Error("nf"), { code: 404 }));
        if (want && want !== stored.metadata?.resourceVersion)
          return Promise.reject(Object.assign(new Error("precondition"), { code: 409 }));
        stored = undefined;
        return Promise.resolve({});
      },
    };
    return { api, calls, stored: () => stored };
  }

  it("creates, or replaces what is there, and deletes only what it wrote", async () => {
    const fresh = fakeApi();
    assert.equal(await register(fresh.api, reg), "1");
    assert.equal(await unregister(fresh.api, reg.name, "1"), true);
    assert.deepEqual(fresh.calls, ["create", "delete if 1"]);
    assert.equal(fresh.stored(), undefined);

    // A rolling update: the new instance replaces the old one's configuration (identical but for its owner),
    // then the old one stops; its delete must leave the new configuration in place.
    const cluster = fakeApi();
    const old = await register(cluster.api, reg);
    const current = await register(cluster.api, { ...reg, owner: "pod-b 2" });
    assert.notEqual(current, old);
    assert.equal(await unregister(cluster.api, reg.name, old), false);
    assert.equal(cluster.stored()?.metadata?.annotations?.[ownerAnnotation], "pod-b 2");
    assert.deepEqual(cluster.calls, ["create", "create", "read", `replace at ${old}`, `delete if ${old}`]);
    assert.equal(await unregister(cluster.api, reg.name, current), true);

    assert.equal(await unregister(fakeApi().api, reg.name, "8"), false); // gone already
    await assert.rejects(unregister(fakeApi(undefined, 500).api, reg.name, "8"), /boom/);
  });
});
