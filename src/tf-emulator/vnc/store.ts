// The emulator's object store: every VNC object by uuid, with the indexes the API needs to answer in O(1)
// (fq_name → uuid, parent → children, target → referrers, type → objects). Refs are stored by uuid only;
// the `to` fq_names, hrefs, back-refs and children of the JSON answers are computed when an object is read,
// so they can never go stale. Mutations go through insert/replace/remove, which keep the indexes and tell
// listeners (the state file, the fake agent) what changed.
import { renderObject, type RenderOptions } from "./render.js";

export interface StoredRef {
  uuid: string;
  attr: Record<string, unknown> | null;
}

export interface StoredObject {
  type: string;
  uuid: string;
  fq_name: string[];
  parent_type?: string;
  parent_uuid?: string;
  /** Properties as the API shows them (display_name, id_perms, perms2, annotations, type-specific ones). */
  props: Record<string, unknown>;
  /** Forward refs by target type (hyphenated), in the order they were given. */
  refs: Record<string, StoredRef[]>;
  /** A default child the server created itself (a VN's routing-instance): deleted with its parent. */
  auto?: boolean;
  /** Positions of the elements of list properties (collections.ts); absent means "0".."n-1". */
  positions?: Record<string, string[]>;
}

/** A read of an object, shaped as the REST API answers `GET /<type>/<uuid>` (envelope content). */
export interface VncView {
  uuid: string;
  fq_name: string[];
  [key: string]: unknown;
}

export interface StoreEvent {
  op: "create" | "update" | "delete";
  type: string;
  uuid: string;
  fq_name: string[];
}

export interface StoreSnapshot {
  version: 1;
  counters: Record<string, number>;
  objects: StoredObject[];
  /** Refs marked with /ref-relax-for-delete, as [from uuid, to uuid] (absent in older state files). */
  relaxed?: [string, string][];
  /** The user-agent key/value store (/useragent-kv), as [key, value] (absent in older state files). */
  useragent_kv?: [string, unknown][];
}

const fqKey = (type: string, fqName: readonly string[]): string => JSON.stringify([type, ...fqName]);

export class VncStore {
  private readonly objects = new Map<string, StoredObject>();
  private readonly byFq = new Map<string, string>();
  private readonly byType = new Map<string, Set<string>>();
  private readonly children = new Map<string, Set<string>>();
  private readonly referrers = new Map<string, Set<string>>();
  private readonly listeners = new Set<(ev: StoreEvent) => void>();
  private counters: Record<string, number> = {};
  /** `from>to` for each ref relaxed for delete: it no longer blocks deleting `to`. */
  private relaxedRefs = new Set<string>();
  /** /useragent-kv: a table of its own in real TF (useragent_keyval_table), not config objects. */
  private kv = new Map<string, unknown>();
  private readonly kvListeners = new Set<() => void>();
  /** Base of the hrefs in views read straight from the store (the REST API uses the request's Host). */
  baseUrl = "http://127.0.0.1:8082";

  // ---- reads for other emulator code and tests: the same shapes the REST API returns ----

  /** The object as `GET /<type>/<uuid>` would return it (refs, back-refs and children included). */
  get(uuid: string, opts?: Partial<RenderOptions>): VncView | undefined {
    const obj = this.objects.get(uuid);
    return obj && this.view(obj, opts);
  }

  byFqName(type: string, fqName: readonly string[], opts?: Partial<RenderOptions>): VncView | undefined {
    const obj = this.recordByFqName(type, fqName);
    return obj && this.view(obj, opts);
  }

  list(type: string, opts?: Partial<RenderOptions>): VncView[] {
    return this.records(type).map((obj) => this.view(obj, opts));
  }

  typeOf(uuid: string): string | undefined {
    return this.objects.get(uuid)?.type;
  }

  get size(): number {
    return this.objects.size;
  }

  /** Calls `listener` after every mutation; returns the unsubscribe function. */
  on(listener: (ev: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  view(obj: StoredObject, opts?: Partial<RenderOptions>): VncView {
    return renderObject(this, obj, { baseUrl: this.baseUrl, ...opts });
  }

  // ---- raw records, for the API handlers ----

  record(uuid: string): StoredObject | undefined {
    return this.objects.get(uuid);
  }

  recordByFqName(type: string, fqName: readonly string[]): StoredObject | undefined {
    const uuid = this.byFq.get(fqKey(type, fqName));
    return uuid === undefined ? undefined : this.objects.get(uuid);
  }

  records(type: string): StoredObject[] {
    return [...(this.byType.get(type) ?? [])].map((uuid) => this.objects.get(uuid)!);
  }

  childrenOf(uuid: string): StoredObject[] {
    return [...(this.children.get(uuid) ?? [])].map((u) => this.objects.get(u)!);
  }

  /** Objects holding at least one ref to `uuid`. */
  referrersOf(uuid: string): StoredObject[] {
    return [...(this.referrers.get(uuid) ?? [])].map((u) => this.objects.get(u)!);
  }

  // ---- mutations ----

  insert(obj: StoredObject): void {
    this.objects.set(obj.uuid, obj);
    this.byFq.set(fqKey(obj.type, obj.fq_name), obj.uuid);
    addTo(this.byType, obj.type, obj.uuid);
    if (obj.parent_uuid) addTo(this.children, obj.parent_uuid, obj.uuid);
    this.indexRefs(obj);
    this.emit({ op: "create", type: obj.type, uuid: obj.uuid, fq_name: obj.fq_name });
  }

  /** Stores a new version of an existing object (same uuid, type, fq_name and parent). */
  replace(obj: StoredObject): void {
    const prev = this.objects.get(obj.uuid);
    if (!prev) throw new Error(`replace: ${obj.type} ${obj.uuid} is not stored`);
    this.unindexRefs(prev);
    this.objects.set(obj.uuid, obj);
    this.indexRefs(obj);
    this.emit({ op: "update", type: obj.type, uuid: obj.uuid, fq_name: obj.fq_name });
  }

  remove(uuid: string): void {
    const obj = this.objects.get(uuid);
    if (!obj) return;
    this.unindexRefs(obj);
    this.objects.delete(uuid);
    this.byFq.delete(fqKey(obj.type, obj.fq_name));
    removeFrom(this.byType, obj.type, uuid);
    if (obj.parent_uuid) removeFrom(this.children, obj.parent_uuid, uuid);
    for (const k of [...this.relaxedRefs])
      if (k.startsWith(`${uuid}>`) || k.endsWith(`>${uuid}`)) this.relaxedRefs.delete(k);
    this.emit({ op: "delete", type: obj.type, uuid, fq_name: obj.fq_name });
  }

  /** Marks `from`'s ref to `to` as relaxed for delete (real: a relaxbackref column on `to`). */
  relax(from: string, to: string): void {
    this.relaxedRefs.add(`${from}>${to}`);
    const obj = this.objects.get(from);
    if (obj) this.emit({ op: "update", type: obj.type, uuid: from, fq_name: obj.fq_name });
  }

  isRelaxed(from: string, to: string): boolean {
    return this.relaxedRefs.has(`${from}>${to}`);
  }

  // ---- the user-agent key/value table ----

  kvGet(key: string): unknown {
    return this.kv.get(key);
  }

  kvHas(key: string): boolean {
    return this.kv.has(key);
  }

  kvEntries(): [string, unknown][] {
    return [...this.kv.entries()];
  }

  kvSet(key: string, value: unknown): void {
    this.kv.set(key, value);
    for (const l of this.kvListeners) l();
  }

  kvDelete(key: string): void {
    if (this.kv.delete(key)) for (const l of this.kvListeners) l();
  }

  /** Calls `listener` after every change of the key/value table (the state file saves then). */
  onKvChange(listener: () => void): () => void {
    this.kvListeners.add(listener);
    return () => this.kvListeners.delete(listener);
  }

  /** Next value of a persistent counter (1, 2, ...). Values are never handed out twice. */
  nextCounter(name: string): number {
    const next = (this.counters[name] ?? 0) + 1;
    this.counters[name] = next;
    return next;
  }

  counter(name: string): number {
    return this.counters[name] ?? 0;
  }

  snapshot(): StoreSnapshot {
    return {
      version: 1,
      counters: { ...this.counters },
      objects: [...this.objects.values()],
      relaxed: [...this.relaxedRefs].map((k) => k.split(">") as [string, string]),
      useragent_kv: this.kvEntries(),
    };
  }

  /** Replaces the whole state (at start, from the state file). Listeners are not told. */
  load(snap: StoreSnapshot): void {
    const listeners = [...this.listeners];
    this.listeners.clear();
    try {
      for (const uuid of [...this.objects.keys()]) this.remove(uuid);
      this.counters = { ...snap.counters };
      for (const obj of snap.objects) this.insert(obj);
      this.relaxedRefs = new Set((snap.relaxed ?? []).map(([from, to]) => `${from}>${to}`));
      this.kv = new Map(snap.useragent_kv ?? []);
    } finally {
      for (const l of listeners) this.listeners.add(l);
    }
  }

  private indexRefs(obj: StoredObject): void {
    for (const refs of Object.values(obj.refs)) for (const r of refs) addTo(this.referrers, r.uuid, obj.uuid);
  }

  private unindexRefs(obj: StoredObject): void {
    for (const refs of Object.values(obj.refs))
      for (const r of refs) removeFrom(this.referrers, r.uuid, obj.uuid);
  }

  private emit(ev: StoreEvent): void {
    for (const l of this.listeners) l(ev);
  }
}

function addTo(index: Map<string, Set<string>>, key: string, value: string): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom(index: Map<string, Set<string>>, key: string, value: string): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
}
