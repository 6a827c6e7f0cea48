// POST /list-bulk-collection: a list whose uuid lists do not fit in a URL (the official client switches to
// it above 25 ids). The body carries the GET list's parameters plus "type"; api_server.py's
// list_bulk_collection_http_post reads them differently from the query string, which this reproduces:
// parent_id/back_ref_id/obj_uuids must be comma-separated strings, count/detail/exclude_hrefs are taken by
// Python truth (so the string "false" is true), and fq_names, parent_fq_name_str and parent_type are ignored.
import { notFound, pythonCrash } from "./errors.js";
import { pyStr } from "./pyrepr.js";
import { hyphenated, isResourceType } from "./schema.js";
import { falsy, pyType } from "./validate.js";

/** The resource type and the equivalent GET list query for a list-bulk-collection body. */
export function bulkListQuery(body: unknown): { type: string; query: URLSearchParams } {
  if (!(typeof body === "object" && body !== null && !Array.isArray(body)))
    throw pythonCrash(`AttributeError: '${pyType(body)}' object has no attribute 'get'`);
  const params = body as Record<string, unknown>;
  const rawType = params.type;
  const type = typeof rawType === "string" ? hyphenated(rawType) : "";
  if (!isResourceType(type)) throw notFound(`Resource type '${pyStr(rawType ?? null)}' not found`);

  const q = new URLSearchParams();
  const split = (name: string): void => {
    if (!(name in params)) return;
    const v = params[name];
    if (typeof v !== "string")
      throw pythonCrash(`AttributeError: '${pyType(v)}' object has no attribute 'split'`);
    q.set(name, v);
  };
  split("parent_id");
  split("back_ref_id");
  split("obj_uuids");
  if (!falsy(params.count)) q.set("count", "true");
  if (!falsy(params.detail)) q.set("detail", "true");
  if (!falsy(params.exclude_hrefs)) q.set("exclude_hrefs", "");
  const filters = params.filters;
  if (!falsy(filters)) {
    if (typeof filters !== "string")
      throw pythonCrash(`TypeError: can only concatenate str (not "${pyType(filters)}") to str`);
    q.set("filters", filters);
  }
  const fields = params.fields;
  if (!falsy(fields)) {
    if (typeof fields !== "string")
      throw pythonCrash(`AttributeError: '${pyType(fields)}' object has no attribute 'split'`);
    q.set("fields", fields);
  }
  return { type, query: q };
}
