// /useragent-kv: the key/value table user agents (the Neutron plugin, kube-manager) keep their own state
// in, as api_server.py's useragent_kv_http_post and the database layer answer: STORE and DELETE answer an
// empty 200 (a DELETE of a missing key too), RETRIEVE `{"value": v}`, a list of values for a list of keys
// (missing ones left out) or every `{"key", "value"}` pair when the key is empty.
import { badRequest, notFound, pythonCrash } from "./errors.js";
import { pyStr } from "./pyrepr.js";
import type { VncStore } from "./store.js";
import { falsy, pyType } from "./validate.js";

/** The answer's JSON, or undefined for the empty 200 the real handler's `None` gives. */
export function useragentKv(store: VncStore, body: unknown): { value: unknown } | undefined {
  if (!(typeof body === "object" && body !== null && !Array.isArray(body)))
    throw pythonCrash(`AttributeError: '${pyType(body)}' object has no attribute 'get'`);
  const params = body as Record<string, unknown>;
  const oper = params.operation;
  if (oper === undefined || oper === null)
    throw badRequest("Error: Key/value store API needs 'operation' parameter");
  if (!("key" in params)) throw badRequest("Error: Key/value store API needs 'key' parameter");
  const key = params.key;
  // Row keys are strings in the real table; other JSON keys are kept under their Python str().
  const rowKey = (k: unknown): string => pyStr(k ?? null);

  if (oper === "STORE") {
    store.kvSet(rowKey(key), params.value ?? "");
    return undefined;
  }
  if (oper === "RETRIEVE") {
    if (falsy(key)) return { value: store.kvEntries().map(([k, value]) => ({ key: k, value })) };
    if (Array.isArray(key))
      return {
        value: [...new Set(key.map(rowKey))].filter((k) => store.kvHas(k)).map((k) => store.kvGet(k)),
      };
    if (!store.kvHas(rowKey(key))) {
      if (typeof key !== "string")
        throw pythonCrash(`TypeError: can only concatenate str (not "${pyType(key)}") to str`);
      throw notFound(`Unknown User-Agent key ${key}`);
    }
    return { value: store.kvGet(rowKey(key)) };
  }
  if (oper === "DELETE") {
    store.kvDelete(rowKey(key));
    return undefined;
  }
  if (typeof oper !== "string")
    throw pythonCrash(`TypeError: can only concatenate str (not "${pyType(oper)}") to str`);
  throw notFound(`Invalid Operation ${oper}`);
}
