// List and map properties ("ListProperty"/"MapProperty") element by element, as the real server keeps them
// (vnc_cassandra.py): one database column per element, a list element under its position (a string:
// "0".."n-1" when the whole list is written, any string a prop-collection-update gives, a uuid for an add
// without one), a map element under the value of its key field. Reads return elements in column order,
// sorted by position or key bytes, so a list position "10" comes before "2", and a list or map without
// elements is not shown at all — both as in TF.
import { complexTypes, resourceProps } from "./props.js";
import { pyStr } from "./pyrepr.js";
import type { StoredObject } from "./store.js";

export interface Collection {
  kind: "list" | "map";
  /** The one field of the property's type that holds the elements (`key_value_pair` of KeyValuePairs). */
  wrapper: string;
  /** The elements' complex type (KeyValuePair), for validation. */
  elemType: string;
  /** Map properties: the element field that is the key. */
  key?: string;
}

/** One element and its position (list) or key (map). */
export type Entry = [value: unknown, position: string];

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The collection `field` of `type` is, or undefined when it is no list/map property. */
export function collectionOf(type: string, field: string): Collection | undefined {
  const props = resourceProps[type] ?? {};
  const spec = Object.hasOwn(props, field) ? props[field] : undefined;
  if (!spec?.coll) return undefined;
  const first = Object.entries(complexTypes[spec.t] ?? {})[0];
  if (!first) return undefined;
  return { kind: spec.coll, wrapper: first[0], elemType: first[1].t, key: spec.key };
}

/** A map element's column name: `'%s' % elem[key]`. */
export const mapKey = (elem: unknown, key: string | undefined): string =>
  pyStr(isRecord(elem) && key !== undefined ? (elem[key] ?? null) : null);

/** The stored elements of `field` with their positions, in column order. */
export function entriesOf(obj: StoredObject, field: string, c: Collection): Entry[] {
  const holder = obj.props[field];
  const list = isRecord(holder) ? holder[c.wrapper] : undefined;
  const elems: unknown[] = Array.isArray(list) ? list : [];
  if (c.kind === "map") return elems.map((e) => [e, mapKey(e, c.key)]);
  const pos = obj.positions?.[field];
  return elems.map((e, i) => [e, pos?.length === elems.length ? pos[i]! : String(i)]);
}

const byBytes = (a: Entry, b: Entry): number => Buffer.compare(Buffer.from(a[1]), Buffer.from(b[1]));

/** Stores these elements as `field`'s columns: one per position (the last write wins), in column order. */
export function setEntries(obj: StoredObject, field: string, c: Collection, entries: Entry[]): void {
  const columns = new Map<string, unknown>();
  for (const [value, position] of entries) columns.set(position, value);
  const sorted: Entry[] = [...columns.entries()].map(([p, v]) => [v, p]);
  sorted.sort(byBytes);
  const positions = { ...obj.positions };
  delete positions[field];
  if (sorted.length === 0) delete obj.props[field];
  else {
    obj.props[field] = { [c.wrapper]: sorted.map(([v]) => v) };
    if (c.kind === "list") positions[field] = sorted.map(([, p]) => p);
  }
  if (Object.keys(positions).length > 0) obj.positions = positions;
  else delete obj.positions;
}

/**
 * After a create or PUT wrote these properties whole: list elements get positions "0".."n-1", map elements
 * their keys, and the columns are read back in order (object_create / object_update in vnc_cassandra.py).
 */
export function storeWhole(obj: StoredObject, fields: Iterable<string>): void {
  for (const field of fields) {
    const c = collectionOf(obj.type, field);
    if (!c) continue;
    const holder = obj.props[field];
    if (holder === undefined || holder === null) {
      setEntries(obj, field, c, []);
      continue;
    }
    if (!isRecord(holder)) continue;
    // The real server takes the holder's first key as the wrapper (validation refuses any other key).
    const first = Object.keys(holder)[0];
    const elems = first === undefined ? [] : holder[first];
    if (!Array.isArray(elems)) continue;
    // A map element without its key fails in the real database layer; such a value is kept as it came.
    if (c.kind === "map" && elems.some((e) => !isRecord(e) || c.key === undefined || !(c.key in e))) continue;
    const entries = elems.map((e, i): Entry => [e, c.kind === "map" ? mapKey(e, c.key) : String(i)]);
    setEntries(obj, field, c, entries);
  }
}
