// Registry store on Kubernetes custom resources, as upstream's registry-k8s keeps them (sdk-k8s
// pkg/registry/etcd, types in pkg/tools/k8s/apis/networkservicemesh.io/v1): group networkservicemesh.io,
// version v1, one NetworkService / NetworkServiceEndpoint object per record in one namespace, named after the
// record, with the registry proto as `spec` in Go's encoding/json form (snake_case names, empty fields left
// out, timestamps as {seconds, nanos}). So `kubectl get nse,netsvc` shows the registry, upstream and nsm-ts
// registries can share a cluster's records, and replicas see each other's writes through a watch.
// A record's name is its object's metadata.name, unchanged, as upstream; a name Kubernetes cannot take is
// refused with INVALID_ARGUMENT (upstream passes the apiserver's 422 on as UNKNOWN). Upstream writes to its
// namespace but lists and watches all of them; we read only the namespace we write, since records in another
// could be neither refreshed, expired nor unregistered from here (upstream's deletes also name its namespace).
import { status } from "@grpc/grpc-js";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ApiException, CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
import type {
  Match,
  NetworkService,
  NetworkServiceEndpoint,
  NetworkServiceLabels,
} from "../../api/registry.js";
import type { Timestamp } from "../../api/google/protobuf/timestamp.js";
import { StatusError } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import { timestampToMs } from "../../core/time.js";
import type { RegistryStore, StoreChange } from "./store.js";

export const group = "networkservicemesh.io";
export const version = "v1";
/** Upstream's default namespace (cmd-registry-k8s NSM_NAMESPACE, default "default"). */
export const defaultNamespace = "default";

export interface K8sStoreOptions {
  /** Where the records live (NSM_NAMESPACE; default "default", as upstream). */
  namespace?: string;
  /**
   * A kubeconfig file, or a loaded KubeConfig. Without one: the pod's service account when running in a
   * cluster, else KUBECONFIG or ~/.kube/config (upstream's order).
   */
  kubeconfig?: string | KubeConfig;
  log?: Logger;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

// ---- spec <-> record: the JSON protoc-gen-go's struct tags give (`json:"name,omitempty"`) ----

/** Sets `key` unless the value is what Go's omitempty leaves out. */
function set(out: Json, key: string, v: unknown): void {
  if (v === undefined || v === "" || v === 0 || v === false) return;
  if (Array.isArray(v) && v.length === 0) return;
  out[key] = v;
}

/** A Go map: omitted when empty (an empty map is a nil map after decoding anyway). */
const goMap = (m: Record<string, string>): Record<string, string> | undefined =>
  Object.keys(m).length > 0 ? { ...m } : undefined;

function timestampToSpec(ts: Timestamp | undefined): Json | undefined {
  if (!ts) return undefined;
  const out: Json = {};
  set(out, "seconds", ts.seconds);
  set(out, "nanos", ts.nanos);
  return out;
}

function labelsToSpec(labels: Record<string, string>): Json {
  const out: Json = {};
  set(out, "labels", goMap(labels));
  return out;
}

export function serviceToSpec(ns: NetworkService): Json {
  const out: Json = {};
  set(out, "name", ns.name);
  set(out, "payload", ns.payload);
  set(
    out,
    "matches",
    ns.matches.map((m) => {
      const match: Json = {};
      set(match, "source_selector", goMap(m.sourceSelector));
      set(
        match,
        "routes",
        m.routes.map((r) => {
          const route: Json = {};
          set(route, "destination_selector", goMap(r.destinationSelector));
          set(route, "weight", r.weight);
          return route;
        }),
      );
      set(match, "fallthrough", m.fallthrough);
      if (m.metadata) match.metadata = labelsToSpec(m.metadata.labels);
      return match;
    }),
  );
  set(out, "path_ids", ns.pathIds);
  return out;
}

export function endpointToSpec(nse: NetworkServiceEndpoint): Json {
  const out: Json = {};
  set(out, "name", nse.name);
  set(out, "network_service_names", nse.networkServiceNames);
  const labels = Object.entries(nse.networkServiceLabels);
  if (labels.length > 0)
    out.network_service_labels = Object.fromEntries(labels.map(([k, v]) => [k, labelsToSpec(v.labels)]));
  set(out, "url", nse.url);
  set(out, "expiration_time", timestampToSpec(nse.expirationTime));
  set(out, "initial_registration_time", timestampToSpec(nse.initialRegistrationTime));
  set(out, "path_ids", nse.pathIds);
  return out;
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const strs = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
const strMap = (v: unknown): Record<string, string> =>
  isObject(v)
    ? Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === "string"))
    : {};
/** int64 comes as a number from Go; a quoted number (protojson style, hand-written YAML) is taken too. */
const num = (v: unknown): number => {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : 0;
  return Number.isFinite(n) ? Math.trunc(n) : 0;
};
const timestampFromSpec = (v: unknown): Timestamp | undefined =>
  isObject(v) ? { seconds: num(v.seconds), nanos: num(v.nanos) } : undefined;
const labelsFromSpec = (v: unknown): NetworkServiceLabels => ({
  labels: strMap(isObject(v) ? v.labels : undefined),
});

function matchFromSpec(v: unknown): Match {
  const m = isObject(v) ? v : {};
  return {
    sourceSelector: strMap(m.source_selector),
    routes: (Array.isArray(m.routes) ? m.routes : []).map((r: unknown) => {
      const route = isObject(r) ? r : {};
      return { destinationSelector: strMap(route.destination_selector), weight: num(route.weight) };
    }),
    fallthrough: m.fallthrough === true,
    metadata: isObject(m.metadata) ? labelsFromSpec(m.metadata) : undefined,
  };
}

/** The record of an object; metadata.name names it (it is what replace and delete address). */
export function serviceFromSpec(spec: unknown, name: string): NetworkService {
  const s = isObject(spec) ? spec : {};
  return {
    name,
    payload: str(s.payload),
    matches: (Array.isArray(s.matches) ? s.matches : []).map(matchFromSpec),
    pathIds: strs(s.path_ids),
  };
}

export function endpointFromSpec(spec: unknown, name: string): NetworkServiceEndpoint {
  const s = isObject(spec) ? spec : {};
  const labels = isObject(s.network_service_labels) ? s.network_service_labels : {};
  return {
    name,
    networkServiceNames: strs(s.network_service_names),
    networkServiceLabels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, labelsFromSpec(v)])),
    url: str(s.url),
    expirationTime: timestampFromSpec(s.expiration_time),
    initialRegistrationTime: timestampFromSpec(s.initial_registration_time),
    pathIds: strs(s.path_ids),
  };
}

// ---- names ----

const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Whether `name` can be an object's metadata.name (RFC 1123 subdomain), which upstream uses as is. */
export const validObjectName = (name: string): boolean => name.length <= 253 && dnsSubdomain.test(name);

function checkName(kind: string, name: string): void {
  if (validObjectName(name)) return;
  throw new StatusError(
    status.INVALID_ARGUMENT,
    `${kind}.name: "${name}" cannot be stored as a Kubernetes object name (store k8s): it must be at most 253 ` +
      `lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
  );
}

// ---- errors ----

const codeOf = (err: unknown): number | undefined =>
  err instanceof ApiException
    ? err.code
    : typeof (err as { statusCode?: unknown }).statusCode === "number"
      ? (err as { statusCode: number }).statusCode
      : undefined;

/** The apiserver's Status message of a failed call, else the error's own. */
function messageOf(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    try {
      const parsed: unknown = typeof body === "string" ? JSON.parse(body) : body;
      if (isObject(parsed) && typeof parsed.message === "string") return parsed.message;
    } catch {
      // not JSON: fall through
    }
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A failed apiserver call as the gRPC status a registry caller gets. */
function storeError(err: unknown, what: string): StatusError {
  const code = codeOf(err);
  const grpc =
    code === 400 || code === 422
      ? status.INVALID_ARGUMENT
      : code === 409
        ? status.ABORTED
        : code === undefined || code === 429 || code >= 500
          ? status.UNAVAILABLE
          : status.INTERNAL;
  return new StatusError(grpc, `${what}: ${messageOf(err)}`);
}

// ---- one custom resource kind ----

/** What we last knew of an object: its resourceVersion, and metadata others set that a replace keeps. */
interface Known {
  rv: string;
  deleted: boolean;
  keep?: Json;
}

interface WatchEvent {
  type: string;
  object: Json;
}

/**
 * resourceVersions are etcd revisions, decimal and growing; compared as numbers, so a late echo of an older
 * write of ours is recognised too. Anything else is compared for equality only.
 */
function newer(a: string, b: string): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) > BigInt(b);
  return a !== b;
}

/** metadata a replace must carry over so it does not erase what `kubectl label`/`annotate` set. */
function keptMetadata(meta: Json): Json | undefined {
  const keep: Json = {};
  for (const k of ["labels", "annotations", "finalizers", "ownerReferences"]) if (meta[k]) keep[k] = meta[k];
  return Object.keys(keep).length > 0 ? keep : undefined;
}

function knownOf(obj: unknown): Known | undefined {
  const meta = isObject(obj) && isObject(obj.metadata) ? obj.metadata : undefined;
  const rv = meta?.resourceVersion;
  if (typeof rv !== "string") return undefined;
  return { rv, deleted: false, keep: keptMetadata(meta!) };
}

interface Codec<T> {
  kind: "NetworkService" | "NetworkServiceEndpoint";
  change: StoreChange["kind"];
  plural: string;
  toSpec(v: T): Json;
  fromSpec(spec: unknown, name: string): T;
}

const minBackoffMs = 50;
const maxBackoffMs = 5000;
const maxAttempts = 5;
/** The apiserver ends a watch after this long; we resume it where it stopped. */
const watchTimeoutS = 300;

/**
 * Writes, lists and watches one kind. `known` is what we last knew of each object (from our writes and from
 * the watch); a watch event no newer than it is our own write coming back, or already superseded. Events for
 * a name with one of our writes in flight wait for the write's answer, which tells whether they are its echo.
 */
class Resource<T extends NetworkService | NetworkServiceEndpoint> {
  private readonly known = new Map<string, Known>();
  private readonly inflight = new Map<string, number>();
  private readonly held = new Map<string, WatchEvent[]>();
  /** Where the watch resumes; undefined: list first (start, or the apiserver no longer has that version). */
  private resumeRv: string | undefined;
  private listener?: (change: StoreChange) => void;
  private conn?: AbortController;
  private generation = 0;
  private backoffMs = minBackoffMs;
  private timer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly codec: Codec<T>,
    private readonly api: CustomObjectsApi,
    private readonly kc: KubeConfig,
    private readonly namespace: string,
    private readonly log: Logger | undefined,
  ) {}

  private get params(): { group: string; version: string; namespace: string; plural: string } {
    return { group, version, namespace: this.namespace, plural: this.codec.plural };
  }

  async list(): Promise<T[]> {
    let list: unknown;
    try {
      list = await this.api.listNamespacedCustomObject(this.params);
    } catch (err) {
      if (codeOf(err) === 404)
        throw new Error(
          `${this.codec.plural}.${group}/${version} is not served: install the CRDs (kubectl apply -k deploy/k8s/apps/crds)`,
        );
      throw storeError(err, `listing ${this.codec.plural} in namespace ${this.namespace}`);
    }
    const items = isObject(list) && Array.isArray(list.items) ? (list.items as unknown[]) : [];
    const out: T[] = [];
    const seen = new Set<string>();
    for (const item of items) {
      if (!isObject(item)) continue;
      const record = this.apply({ type: "ADDED", object: item });
      const name = nameOf(item);
      if (name) seen.add(name);
      if (record) out.push(record);
    }
    const listRv = isObject(list) && isObject(list.metadata) ? list.metadata.resourceVersion : undefined;
    // What vanished while we were not watching: deleted as of the list.
    for (const [name, k] of this.known) {
      if (seen.has(name)) continue;
      if (k.deleted && !this.inflight.has(name)) this.known.delete(name);
      else if (typeof listRv === "string")
        this.apply({ type: "DELETED", object: { metadata: { name, resourceVersion: listRv } } });
    }
    this.resumeRv = typeof listRv === "string" ? listRv : undefined;
    return out;
  }

  async put(record: T): Promise<void> {
    const name = record.name;
    checkName(this.codec.kind, name);
    const spec = this.codec.toSpec(record);
    await this.own(name, async () => {
      let cur = this.known.get(name);
      for (let attempt = 1; ; attempt++) {
        const replace = cur !== undefined && !cur.deleted;
        try {
          const body = {
            apiVersion: `${group}/${version}`,
            kind: this.codec.kind,
            metadata: {
              ...cur?.keep,
              name,
              namespace: this.namespace,
              resourceVersion: replace ? cur!.rv : undefined,
            },
            spec,
          };
          const obj: unknown = replace
            ? await this.api.replaceNamespacedCustomObject({ ...this.params, name, body })
            : await this.api.createNamespacedCustomObject({ ...this.params, body });
          return knownOf(obj);
        } catch (err) {
          const code = codeOf(err);
          if (attempt < maxAttempts && code === 409) {
            // Exists (create) or changed since we saw it (replace): replace the latest.
            cur = await this.get(name);
            continue;
          }
          if (attempt < maxAttempts && code === 404 && replace) {
            cur = undefined;
            continue;
          }
          throw storeError(err, `storing ${this.codec.kind} ${name}`);
        }
      }
    });
  }

  /**
   * Deletes the version we know. If someone changed the object since, `keepNewer` says whether their version
   * stands (an endpoint refreshed by another replica must not be removed by our expiry timer).
   */
  async delete(name: string, keepNewer?: (latest: T) => boolean): Promise<void> {
    if (!validObjectName(name)) return; // nothing can be stored under it
    await this.own(name, async () => {
      const k = this.known.get(name);
      let rv = k && !k.deleted ? k.rv : undefined;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.api.deleteNamespacedCustomObject({
            ...this.params,
            name,
            body: rv ? { preconditions: { resourceVersion: rv } } : undefined,
          });
          // The answer is a Status without a resourceVersion: remember the version we deleted.
          return { rv: rv ?? "", deleted: true };
        } catch (err) {
          const code = codeOf(err);
          if (code === 404) return undefined;
          if (attempt < maxAttempts && code === 409) {
            const latest = await this.getObject(name);
            if (!latest) return undefined;
            if (keepNewer?.(this.codec.fromSpec(latest.spec, name))) return undefined;
            rv = knownOf(latest)?.rv;
            continue;
          }
          throw storeError(err, `deleting ${this.codec.kind} ${name}`);
        }
      }
    });
  }

  private async getObject(name: string): Promise<Json | undefined> {
    try {
      const obj: unknown = await this.api.getNamespacedCustomObject({ ...this.params, name });
      return isObject(obj) ? obj : undefined;
    } catch (err) {
      if (codeOf(err) === 404) return undefined;
      throw storeError(err, `reading ${this.codec.kind} ${name}`);
    }
  }

  private async get(name: string): Promise<Known | undefined> {
    return knownOf(await this.getObject(name));
  }

  /** Runs one of our writes of `name`; holds the watch's events for it until the write's version is known. */
  private async own(name: string, write: () => Promise<Known | undefined>): Promise<void> {
    this.inflight.set(name, (this.inflight.get(name) ?? 0) + 1);
    try {
      const k = await write();
      const cur = this.known.get(name);
      if (k && (!cur || k.deleted || newer(k.rv, cur.rv))) this.known.set(name, k);
    } finally {
      const n = this.inflight.get(name)! - 1;
      if (n > 0) this.inflight.set(name, n);
      else {
        this.inflight.delete(name);
        const events = this.held.get(name) ?? [];
        this.held.delete(name);
        for (const ev of events) this.apply(ev);
      }
    }
  }

  /** Takes in one object state (watch event or list item); reports it if it is news. Returns the record. */
  private apply(ev: WatchEvent): T | undefined {
    const name = nameOf(ev.object);
    const rv = isObject(ev.object.metadata) ? ev.object.metadata.resourceVersion : undefined;
    if (!name || typeof rv !== "string") return undefined;
    const record = ev.type === "DELETED" ? undefined : this.codec.fromSpec(ev.object.spec, name);
    if (this.inflight.has(name)) {
      let list = this.held.get(name);
      if (!list) this.held.set(name, (list = []));
      list.push(ev);
      return record;
    }
    const cur = this.known.get(name);
    if (ev.type === "DELETED" && cur?.deleted) {
      // Our own delete coming back: an object is deleted once, and a re-creation in between would have
      // replaced the tombstone.
      this.known.delete(name);
      return undefined;
    }
    if (cur && !newer(rv, cur.rv)) return record; // our own write, or older than what we know
    if (ev.type === "DELETED") {
      this.known.delete(name);
      if (cur) this.emit({ kind: this.codec.change, name });
      return undefined;
    }
    this.known.set(name, knownOf(ev.object)!);
    this.emit({ kind: this.codec.change, name, value: record });
    return record;
  }

  private emit(change: StoreChange): void {
    if (!this.listener) return;
    try {
      this.listener(change);
    } catch (err) {
      this.log?.error(
        { err, change: { kind: change.kind, name: change.name } },
        "store change listener failed",
      );
    }
  }

  subscribe(listener: (change: StoreChange) => void): void {
    this.listener = listener;
    void this.connect();
  }

  /** One watch connection: from where the last one stopped, or from a fresh list (whose changes are reported). */
  private async connect(): Promise<void> {
    if (this.closed) return;
    const gen = ++this.generation;
    const started = Date.now();
    try {
      if (this.resumeRv === undefined) await this.list();
      if (this.closed || gen !== this.generation) return;
      const path = `/apis/${group}/${version}/namespaces/${this.namespace}/${this.codec.plural}`;
      const conn = await new Watch(this.kc).watch(
        path,
        { resourceVersion: this.resumeRv, allowWatchBookmarks: true, timeoutSeconds: watchTimeoutS },
        (type: string, obj: unknown) => this.onEvent(gen, type, obj),
        (err: unknown) => this.onDone(gen, err, started),
      );
      if (this.closed || gen !== this.generation) conn.abort();
      else this.conn = conn;
    } catch (err) {
      this.onDone(gen, err, started);
    }
  }

  private onEvent(gen: number, type: string, obj: unknown): void {
    if (gen !== this.generation || this.closed || !isObject(obj)) return;
    // Errors thrown here would vanish in the client's line reader: catch them ourselves.
    try {
      if (type === "ERROR") {
        // 410 Gone: the apiserver no longer has our resourceVersion; list again. The stream ends after it.
        if (obj.code === 410) this.resumeRv = undefined;
        this.log?.warn({ kind: this.codec.kind, status: obj.message }, "watch error");
        this.conn?.abort();
        return;
      }
      const rv = isObject(obj.metadata) ? obj.metadata.resourceVersion : undefined;
      if (typeof rv === "string") this.resumeRv = rv;
      this.backoffMs = minBackoffMs;
      if (type !== "BOOKMARK") this.apply({ type, object: obj });
    } catch (err) {
      this.log?.error({ err, kind: this.codec.kind }, "watch event failed");
    }
  }

  private onDone(gen: number, err: unknown, started: number): void {
    if (gen !== this.generation || this.closed) return;
    this.conn = undefined;
    if (codeOf(err) === 410) this.resumeRv = undefined;
    // A watch the apiserver ended on time resumes at once; failures back off.
    let delay = 0;
    if (err || Date.now() - started < 1000) {
      delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, maxBackoffMs);
    }
    if (err) this.log?.warn({ kind: this.codec.kind, err: messageOf(err), retryMs: delay }, "watch failed");
    this.timer = setTimeout(() => void this.connect(), delay);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.conn?.abort();
    this.conn = undefined;
  }
}

function nameOf(obj: Json): string | undefined {
  const name = isObject(obj.metadata) ? obj.metadata.name : undefined;
  return typeof name === "string" && name !== "" ? name : undefined;
}

// ---- the store ----

function loadKubeConfig(from: string | KubeConfig | undefined): KubeConfig {
  if (from instanceof KubeConfig) return from;
  const kc = new KubeConfig();
  if (from) kc.loadFromFile(from);
  else if (
    process.env.KUBERNETES_SERVICE_HOST &&
    existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token")
  )
    kc.loadFromCluster();
  else if (process.env.KUBECONFIG || existsSync(join(homedir(), ".kube", "config"))) kc.loadFromDefault();
  // Without this the client would quietly try http://localhost:8080.
  else
    throw new Error(
      "store k8s: no Kubernetes configuration (not in a pod, no --kubeconfig, KUBECONFIG or ~/.kube/config)",
    );
  return kc;
}

export class K8sStore implements RegistryStore {
  readonly kind = "k8s";
  readonly namespace: string;
  private readonly services: Resource<NetworkService>;
  private readonly endpoints: Resource<NetworkServiceEndpoint>;

  constructor(opts: K8sStoreOptions = {}) {
    this.namespace = opts.namespace || defaultNamespace;
    const kc = loadKubeConfig(opts.kubeconfig);
    const api = kc.makeApiClient(CustomObjectsApi);
    this.services = new Resource(
      {
        kind: "NetworkService",
        change: "service",
        plural: "networkservices",
        toSpec: serviceToSpec,
        fromSpec: serviceFromSpec,
      },
      api,
      kc,
      this.namespace,
      opts.log,
    );
    this.endpoints = new Resource(
      {
        kind: "NetworkServiceEndpoint",
        change: "endpoint",
        plural: "networkserviceendpoints",
        toSpec: endpointToSpec,
        fromSpec: endpointFromSpec,
      },
      api,
      kc,
      this.namespace,
      opts.log,
    );
  }

  loadServices(): Promise<NetworkService[]> {
    return this.services.list();
  }

  loadEndpoints(): Promise<NetworkServiceEndpoint[]> {
    return this.endpoints.list();
  }

  putService(ns: NetworkService): Promise<void> {
    return this.services.put(ns);
  }

  deleteService(name: string): Promise<void> {
    return this.services.delete(name);
  }

  putEndpoint(nse: NetworkServiceEndpoint): Promise<void> {
    return this.endpoints.put(nse);
  }

  /** An endpoint another writer refreshed after the version we saw is live: it stays (as upstream's expiry). */
  deleteEndpoint(name: string): Promise<void> {
    return this.endpoints.delete(
      name,
      (latest) => latest.expirationTime !== undefined && timestampToMs(latest.expirationTime) > Date.now(),
    );
  }

  /**
   * Reports what others change: another replica, `kubectl delete nse x`. Both watches resume from the loads'
   * lists, so nothing between load and subscribe is missed (without a load, the first list reports every
   * record); after an outage or 410 Gone they list again and report the difference.
   */
  subscribe(listener: (change: StoreChange) => void): void {
    this.services.subscribe(listener);
    this.endpoints.subscribe(listener);
  }

  close(): Promise<void> {
    this.services.close();
    this.endpoints.close();
    return Promise.resolve();
  }
}
