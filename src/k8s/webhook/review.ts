// The admission decision, as a pure function: an AdmissionReview (admission.k8s.io/v1) for a Pod CREATE in,
// the AdmissionReview answer out. A pod whose `networkservicemesh.io` annotation lists network services gets
// an NSC sidecar (`nsm nsc`) with the node's NSM and SPIRE sockets, as a base64 JSONPatch. The annotation is
// checked exactly as `nsm nsc` parses NSM_NETWORK_SERVICES, so a bad one fails at `kubectl apply`, not later
// in a crash-looping sidecar.
import type { V1Container, V1Volume } from "@kubernetes/client-node";
import { parseServiceUrl } from "../../components/client.js";
import type { InjectConfig } from "./config.js";

export const admissionApiVersion = "admission.k8s.io/v1";

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  subResource?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string };
  patchType?: "JSONPatch";
  /** base64 of the JSONPatch document. */
  patch?: string;
}

export interface AdmissionReview {
  apiVersion: typeof admissionApiVersion;
  kind: "AdmissionReview";
  response: AdmissionResponse;
}

export interface JsonPatchAdd {
  op: "add";
  path: string;
  value: unknown;
}

export type Outcome =
  | { kind: "injected"; services: string[]; volumes: string[] }
  | { kind: "skipped"; reason: string }
  | { kind: "rejected"; reason: string };

export interface ReviewResult {
  review: AdmissionReview;
  outcome: Outcome;
  namespace: string;
  /** The pod's name, or its generateName followed by `*` (names are generated after admission). */
  pod: string;
}

/** The body is no AdmissionReview v1 with a request uid: nothing to answer inside a review (HTTP 400). */
export class ReviewDecodeError extends Error {}

export const nsmSocketDir = "/var/lib/networkservicemesh";
export const spireSocketDir = "/run/spire/sockets";

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);
const str = (x: unknown): string | undefined => (typeof x === "string" ? x : undefined);

export function decodeReview(input: unknown): AdmissionRequest {
  if (!isObj(input)) throw new ReviewDecodeError("body is not a JSON object");
  if (input.apiVersion !== admissionApiVersion || input.kind !== "AdmissionReview")
    throw new ReviewDecodeError(
      `body is not an ${admissionApiVersion} AdmissionReview (apiVersion ${JSON.stringify(input.apiVersion)}, ` +
        `kind ${JSON.stringify(input.kind)}); register the webhook with admissionReviewVersions ["v1"]`,
    );
  const req = input.request;
  if (!isObj(req) || typeof req.uid !== "string" || req.uid === "")
    throw new ReviewDecodeError("AdmissionReview has no request.uid");
  return {
    uid: req.uid,
    kind: isObj(req.kind)
      ? { group: str(req.kind.group), version: str(req.kind.version), kind: str(req.kind.kind) }
      : undefined,
    operation: str(req.operation),
    subResource: str(req.subResource),
    namespace: str(req.namespace),
    name: str(req.name),
    object: req.object,
  };
}

/** Splits the annotation as `nsm nsc` splits NSM_NETWORK_SERVICES, and parses every entry the same way. */
export function checkServices(annotation: string, value: string): string[] {
  const services = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (services.length === 0)
    throw new Error(
      `annotation ${annotation}: lists no network service (want kernel://<service>/<ifname>, …)`,
    );
  for (const s of services) {
    try {
      parseServiceUrl(s);
    } catch (e) {
      // parseServiceUrl's message names the entry; decodeURIComponent's (bad %-escapes) does not.
      const why = e instanceof URIError ? `"${s}" has a malformed %-escape` : (e as Error).message;
      throw new Error(`annotation ${annotation}: bad entry "${s}": ${why}`);
    }
  }
  return services;
}

export function review(input: unknown, cfg: InjectConfig): ReviewResult {
  const req = decodeReview(input);
  const meta = isObj(req.object) && isObj(req.object.metadata) ? req.object.metadata : {};
  const namespace = req.namespace ?? str(meta.namespace) ?? "";
  const generateName = str(meta.generateName);
  const pod = str(meta.name) || req.name || (generateName ? `${generateName}*` : "");
  const answer = (response: Omit<AdmissionResponse, "uid">, outcome: Outcome): ReviewResult => ({
    review: {
      apiVersion: admissionApiVersion,
      kind: "AdmissionReview",
      response: { uid: req.uid, ...response },
    },
    outcome,
    namespace,
    pod,
  });
  const allow = (reason: string): ReviewResult => answer({ allowed: true }, { kind: "skipped", reason });
  const reject = (message: string): ReviewResult =>
    answer({ allowed: false, status: { code: 400, message } }, { kind: "rejected", reason: message });

  // Registered for pods CREATE only; anything else that arrives is let through untouched.
  if (
    req.kind?.kind !== "Pod" ||
    (req.kind.group ?? "") !== "" ||
    req.operation !== "CREATE" ||
    req.subResource
  )
    return allow(`not a Pod CREATE (${req.kind?.kind ?? "?"} ${req.operation ?? "?"})`);
  if (!isObj(req.object) || !isObj(req.object.metadata) || !isObj(req.object.spec))
    return reject("request.object is not a Pod (no metadata or spec)");

  const annotations = isObj(meta.annotations) ? meta.annotations : {};
  const value = annotations[cfg.annotation];
  if (value === undefined) return allow(`no ${cfg.annotation} annotation`);
  if (typeof value !== "string") return reject(`annotation ${cfg.annotation} is not a string`);
  let services: string[];
  try {
    services = checkServices(cfg.annotation, value);
  } catch (e) {
    return reject((e as Error).message);
  }

  const spec = req.object.spec;
  const containers = spec.containers ?? null;
  const volumes = spec.volumes ?? null;
  if (containers !== null && !Array.isArray(containers))
    return reject("request.object.spec.containers is not a list");
  if (volumes !== null && !Array.isArray(volumes)) return reject("request.object.spec.volumes is not a list");
  const names = (list: unknown[] | null): string[] =>
    (list ?? []).flatMap((x) => (isObj(x) && typeof x.name === "string" ? [x.name] : []));
  if (names(containers).includes(cfg.containerName))
    return allow(`container ${cfg.containerName} already present`);

  const newVolumes = sidecarVolumes(cfg.containerName).filter((v) => !names(volumes).includes(v.name));
  const patch = [
    ...appendTo("/spec/containers", containers, [sidecar(cfg, value)]),
    ...appendTo("/spec/volumes", volumes, newVolumes),
  ];
  return answer(
    { allowed: true, patchType: "JSONPatch", patch: Buffer.from(JSON.stringify(patch)).toString("base64") },
    { kind: "injected", services, volumes: newVolumes.map((v) => v.name) },
  );
}

/**
 * JSONPatch `add` at `path/-` appends to an existing array but fails when the array is absent: then the
 * whole array is added instead.
 */
function appendTo(path: string, existing: unknown[] | null, items: unknown[]): JsonPatchAdd[] {
  if (items.length === 0) return [];
  if (existing === null) return [{ op: "add", path, value: items }];
  return items.map((value) => ({ op: "add", path: `${path}/-`, value }));
}

function volumeNames(containerName: string): { nsm: string; spire: string } {
  return { nsm: `${containerName}-nsm-socket`, spire: `${containerName}-spire-agent-socket` };
}

function sidecarVolumes(containerName: string): (V1Volume & { name: string })[] {
  const n = volumeNames(containerName);
  return [
    // The nsmgr creates its socket here; DirectoryOrCreate lets the pod start before the nsmgr has.
    { name: n.nsm, hostPath: { path: nsmSocketDir, type: "DirectoryOrCreate" } },
    // Without a SPIRE agent there is no SVID either: better the pod waits than the sidecar fails.
    { name: n.spire, hostPath: { path: spireSocketDir, type: "Directory" } },
  ];
}

function sidecar(cfg: InjectConfig, services: string): V1Container {
  const n = volumeNames(cfg.containerName);
  const defaults = [
    { name: "SPIFFE_ENDPOINT_SOCKET", value: `unix://${spireSocketDir}/agent.sock` },
    { name: "NSM_CONNECT_TO", value: `unix://${nsmSocketDir}/nsm.io.sock` },
  ];
  return {
    name: cfg.containerName,
    image: cfg.image,
    imagePullPolicy: "IfNotPresent",
    args: ["nsc"],
    env: [
      // NSM_ENVS may override the defaults (one entry per name: duplicates make the apiserver warn).
      ...defaults.filter((d) => !cfg.envs.some((e) => e.name === d.name)),
      ...cfg.envs,
      { name: "NSM_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "NSM_NETWORK_SERVICES", value: services },
    ],
    // The sidecar only connects to the sockets (connect(2) works on a read-only mount) and passes its
    // network namespace as a descriptor: it writes nothing there.
    volumeMounts: [
      { name: n.nsm, mountPath: nsmSocketDir, readOnly: true },
      { name: n.spire, mountPath: spireSocketDir, readOnly: true },
    ],
  };
}
