// /prop-collection-get and /prop-collection-update: element-wise read and change of list/map properties,
// with the checks, texts and quirks of api_server.py's prop_collection_http_get/_post and the database
// layer's prop_collection_update (collections.ts holds the element model).
import { randomUUID } from "node:crypto";
import { collectionOf, entriesOf, mapKey, setEntries, type Collection, type Entry } from "./collections.js";
import { badRequest, notFound, pythonCrash } from "./errors.js";
import { pyJsonDumps, pyStr } from "./pyrepr.js";
import type { StoredObject, VncStore } from "./store.js";
import { elementError, falsy, pyType } from "./validate.js";

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

const notCollection = (field: unknown): string =>
  `${pyStr(field ?? null)} neither "ListProperty" nor "MapProperty"`;

/** `GET /prop-collection-get?uuid=&fields=a,b[&position=p]`: `{field: [[element, position], ...]}`. */
export function propCollectionGet(store: VncStore, q: URLSearchParams): Record<string, Entry[]> {
  const uuid = q.get("uuid");
  if (uuid === null) throw badRequest("Object uuid needed for property collection get");
  const fieldsRaw = q.get("fields");
  if (fieldsRaw === null) throw badRequest("Object fields needed for property collection get");
  const fields = fieldsRaw.split(",");
  const position = q.get("position") ?? "";
  const obj = store.record(uuid);
  if (!obj) throw notFound(`Object Not Found: ${uuid}`);
  const colls = fields.map((f) => {
    const c = collectionOf(obj.type, f);
    if (!c) throw badRequest(notCollection(f));
    return [f, c] as const;
  });
  const out: Record<string, Entry[]> = {};
  for (const [f, c] of colls) {
    const entries = entriesOf(obj, f, c);
    // An empty position reads the whole collection (the real server tests it for truth).
    out[f] = position === "" ? entries : entries.filter(([, p]) => p === position);
  }
  return out;
}

interface Update {
  field: string;
  coll: Collection;
  /** As sent: the database layer compares it without lowercasing (an "ADD" passes the checks, does nothing). */
  operation: string;
  value: unknown;
  param: Json;
}

/**
 * `POST /prop-collection-update` `{"uuid", "updates": [{field, operation, value, position}]}`: checks every
 * update, then applies them all to a copy of the object, which `commit` stores (last_modified, type hooks).
 */
export function propCollectionUpdate(
  store: VncStore,
  body: unknown,
  commit: (prev: StoredObject, next: StoredObject, fields: string[]) => void,
): void {
  if (!isRecord(body)) throw pythonCrash(`AttributeError: '${pyType(body)}' object has no attribute 'get'`);
  const params = body;
  const uuid = params.uuid;
  if (falsy(uuid)) throw badRequest("Error: prop_collection_update needs obj_uuid");
  const prev = typeof uuid === "string" ? store.record(uuid) : undefined;
  if (!prev) throw notFound(`Object Not Found: ${pyStr(uuid)}`);

  const rawUpdates = falsy(params.updates) ? [] : params.updates;
  // Iterating a dict or string gives strings, which have no .get(): a crash in the real server too.
  if (!Array.isArray(rawUpdates)) throw pythonCrash("AttributeError: 'str' object has no attribute 'get'");
  const updates = rawUpdates.map((u) => check(prev.type, u));
  // No updates: the real server stores nothing and leaves last_modified as it was.
  if (updates.length === 0) return;

  const next: StoredObject = structuredClone(prev);
  const changed = new Set<string>();
  for (const u of updates) {
    const entries = entriesOf(next, u.field, u.coll);
    const put = (value: unknown, position: string): void => {
      setEntries(next, u.field, u.coll, [...entries, [value, position]]);
      changed.add(u.field);
    };
    const remove = (position: string): void => {
      // A position or key that is not there is no error: the real server removes a missing column.
      setEntries(
        next,
        u.field,
        u.coll,
        entries.filter(([, p]) => p !== position),
      );
      changed.add(u.field);
    };
    if (u.coll.kind === "list") {
      if (u.operation === "add")
        put(u.value, falsy(u.param.position) ? randomUUID() : pyStr(u.param.position));
      else if (u.operation === "modify")
        put(u.value, requiredPosition(u.param)); // modify is an insert
      else if (u.operation === "delete") remove(requiredPosition(u.param));
    } else if (u.operation === "set") {
      if (!isRecord(u.value) || u.coll.key === undefined || !(u.coll.key in u.value))
        throw pythonCrash(`KeyError: '${u.coll.key ?? ""}'`);
      put(u.value, mapKey(u.value, u.coll.key));
    } else if (u.operation === "delete") remove(requiredPosition(u.param));
  }
  commit(prev, next, [...changed]);
}

/** The request-level checks of prop_collection_http_post for one update, in its order. */
function check(type: string, raw: unknown): Update {
  if (!isRecord(raw)) throw pythonCrash(`AttributeError: '${pyType(raw)}' object has no attribute 'get'`);
  const param = raw;
  const field = param.field;
  const coll = typeof field === "string" ? collectionOf(type, field) : undefined;
  if (!coll || typeof field !== "string") throw badRequest(notCollection(field));
  const operation = param.operation;
  if (typeof operation !== "string")
    throw pythonCrash(`AttributeError: '${pyType(operation)}' object has no attribute 'lower'`);
  const oper = operation.toLowerCase();
  const value = param.value ?? null;
  const err = elementError(coll.elemType, value);
  if (err !== undefined) throw badRequest(err);
  const allowed = coll.kind === "list" ? ["add", "modify", "delete"] : ["set", "delete"];
  if (!allowed.includes(oper))
    throw badRequest(`Unsupported operation ${oper} in request ${pyJsonDumps(param)}`);
  // The real texts for a missing value have one %s too few arguments: formatting them raises a TypeError.
  if (value === null && (oper === "add" || oper === "modify" || oper === "set"))
    throw pythonCrash("TypeError: not all arguments converted during string formatting");
  return { field, coll, operation, value, param };
}

/** `oper_param['position']` of the database layer: a KeyError when the update has none. */
function requiredPosition(param: Json): string {
  if (!("position" in param)) throw pythonCrash("KeyError: 'position'");
  return pyStr(param.position ?? null);
}
