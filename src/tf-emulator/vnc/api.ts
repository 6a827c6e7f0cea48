// The VNC config API over the store, independent of HTTP: routes a request (method, path, query, parsed
// body) to generic CRUD, list, the action URIs and the homepage, and answers with the real server's shapes
// and plain-text errors (spec §2.1–2.3). Checks run in the real server's order: refs, uuid clash, parent,
// fq_name clash, then the type's own hooks (resources.ts).
import { randomUUID } from "node:crypto";
import {
  badRequest,
  childrenPresent,
  fqNameExists,
  idNotFound,
  nameNotFound,
  notFound,
  show,
  stillReferred,
  uuidExists,
  VncHttpError,
  wrongType,
} from "./errors.js";
import { bulkListQuery } from "./bulk.js";
import { storeWhole } from "./collections.js";
import { propCollectionGet, propCollectionUpdate } from "./propcoll.js";
import { href, renderObject } from "./render.js";
import { useragentKv } from "./useragentkv.js";
import { typeHooks, type HookContext } from "./resources.js";
import { pyRepr, pyStr } from "./pyrepr.js";
import { isProperty, validateRequest } from "./validate.js";
import {
  childrenKey,
  configRoot,
  hyphenated,
  isResourceType,
  parentTypes,
  plural,
  pyList,
  refKeyTarget,
  refsKey,
  resourceTypes,
  underscored,
} from "./schema.js";
import type { StoredObject, StoredRef, VncStore, VncView } from "./store.js";

export interface ApiRequest {
  method: string;
  /** Path without the query string, e.g. `/virtual-network/<uuid>`. */
  path: string;
  query: URLSearchParams;
  /** The parsed JSON body (undefined when there was none). */
  body: unknown;
  /** `http://host:port` the client used: hrefs are built from it, as the real server does. */
  baseUrl: string;
  ifNoneMatch?: string;
}

export interface ApiResponse {
  status: number;
  json?: unknown;
  text?: string;
  headers?: Record<string, string>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === "string");
const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Keys of a create/update body that are not properties: identity, links, and read-only computed lists. */
const identityKeys = new Set([
  "uuid",
  "fq_name",
  "name",
  "parent_type",
  "parent_uuid",
  "parent_href",
  "href",
]);
const childKeys = new Set(resourceTypes.map(childrenKey));

/** The emulated action URIs, in the order of the real server's _ACTION_RESOURCES (its homepage order). */
const actions = [
  { path: "/prop-collection-get", name: "prop-collection-get", method: "GET" },
  { path: "/prop-collection-update", name: "prop-collection-update", method: "POST" },
  { path: "/ref-update", name: "ref-update", method: "POST" },
  { path: "/ref-relax-for-delete", name: "ref-relax-for-delete", method: "POST" },
  { path: "/fqname-to-id", name: "name-to-id", method: "POST" },
  { path: "/id-to-fqname", name: "id-to-name", method: "POST" },
  { path: "/useragent-kv", name: "useragent-keyvalue", method: "POST" },
  { path: "/list-bulk-collection", name: "list-bulk-collection", method: "POST" },
] as const;

/** `2024-03-26T10:00:00.123000`, the real server's (Python utcnow().isoformat()) timestamp shape. */
const now = (): string => `${new Date().toISOString().slice(0, -1)}000`;

function idPerms(given: unknown, created: string | undefined, modified: string): Record<string, unknown> {
  return {
    enable: true,
    permissions: {
      owner: "cloud-admin",
      owner_access: 7,
      group: "cloud-admin-group",
      group_access: 7,
      other_access: 7,
    },
    user_visible: true,
    description: null,
    creator: null,
    ...(isRecord(given) ? given : {}),
    created: created ?? modified,
    last_modified: modified,
  };
}

function perms2(given: unknown): Record<string, unknown> {
  return {
    owner: "cloud-admin",
    owner_access: 7,
    global_access: 0,
    share: [],
    ...(isRecord(given) ? given : {}),
  };
}

export class VncApi {
  private readonly ctx: HookContext;

  constructor(readonly store: VncStore) {
    this.ctx = {
      store,
      create: (type, body, opts) => this.create(type, body, opts),
      addRef: (obj, refType, refUuid, attr) => this.setRef(obj, refType, refUuid, "ADD", attr),
    };
  }

  handle(req: ApiRequest): ApiResponse {
    try {
      return this.route(req);
    } catch (err) {
      if (err instanceof VncHttpError) return { status: err.status, text: err.text };
      const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
      return { status: 500, text: `Internal error in the TF emulator: ${msg}` };
    }
  }

  private route(req: ApiRequest): ApiResponse {
    const { method, path } = req;
    const segs = path.split("/").filter((s) => s !== "");
    if (segs.length === 0)
      return method === "GET" ? { status: 200, json: this.homepage(req.baseUrl) } : notAllowed(req);

    if (segs.length === 1) {
      const seg = segs[0]!;
      const action = actions.find((a) => a.path === `/${seg}`);
      if (action) return method === action.method ? this.action(seg, req) : notAllowed(req);
      const type = seg.endsWith("s") ? seg.slice(0, -1) : "";
      if (isResourceType(type)) {
        if (method === "GET") return { status: 200, json: this.list(type, req.query, req.baseUrl) };
        if (method === "POST") {
          const body = envelope(type, req.body);
          const obj = this.create(type, body);
          return { status: 200, json: { [type]: this.createAnswer(obj, req.baseUrl) } };
        }
        return notAllowed(req);
      }
    }

    if (segs.length === 2 && isResourceType(segs[0]!)) {
      const [type, uuid] = [segs[0]!, segs[1]!];
      if (method === "GET") return this.read(type, uuid, req);
      if (method === "PUT") {
        this.update(type, uuid, envelope(type, req.body));
        return { status: 200, json: { [type]: { uuid, href: href(req.baseUrl, type, uuid) } } };
      }
      if (method === "DELETE") {
        this.delete(type, uuid, req.baseUrl);
        return { status: 200, text: "" };
      }
      return notAllowed(req);
    }
    throw notFound(`Unknown Request: ${method} ${path}`);
  }

  // ---------------------------------------------------------------- homepage

  homepage(baseUrl: string): { href: string; links: { link: Record<string, string> }[] } {
    const links: { link: Record<string, string> }[] = [];
    for (const type of resourceTypes) {
      links.push({ link: { rel: "collection", href: `${baseUrl}/${plural(type)}`, name: type } });
      links.push({ link: { rel: "resource-base", href: `${baseUrl}/${type}`, name: type } });
    }
    for (const a of actions)
      links.push({ link: { rel: "action", href: `${baseUrl}${a.path}`, name: a.name, method: a.method } });
    return { href: baseUrl, links };
  }

  // ---------------------------------------------------------------- create

  /** Creates an object from the content of a create envelope; returns the stored record. */
  create(type: string, body: Record<string, unknown>, opts: { auto?: boolean } = {}): StoredObject {
    const fqName = body.fq_name;
    if (!isStringArray(fqName) || fqName.length === 0 || fqName.some((s) => s === ""))
      throw badRequest(`Bad Request: ${type} create needs fq_name, a non-empty list of names`);
    validateRequest(type, body, "create");
    const { props, refs } = this.splitBody(type, body, "create");

    const uuid = body.uuid === undefined || body.uuid === null ? randomUUID() : body.uuid;
    if (typeof uuid !== "string" || !uuidRe.test(uuid))
      throw badRequest(`Bad Request: invalid uuid ${show(uuid)}`);
    const clash = this.store.record(uuid);
    if (clash) throw uuidExists(uuid, clash.fq_name);

    for (const [toType, list] of Object.entries(refs)) if (list.length === 0) delete refs[toType];
    const obj: StoredObject = { type, uuid, fq_name: [...fqName], props: {}, refs };
    this.placeUnderParent(obj, body.parent_type);

    const existing = this.store.recordByFqName(type, fqName);
    if (existing) throw fqNameExists(fqName, existing.uuid);

    const stamp = now();
    obj.props = {
      display_name: fqName.at(-1),
      ...props,
      id_perms: idPerms(props.id_perms, undefined, stamp),
      perms2: perms2(props.perms2),
    };
    if (obj.props.display_name === null) obj.props.display_name = fqName.at(-1);
    if (opts.auto) obj.auto = true;

    const hooks = typeHooks[type];
    hooks?.beforeCreate?.(this.ctx, obj);
    storeWhole(obj, Object.keys(obj.props));
    this.store.insert(obj);
    hooks?.afterCreate?.(this.ctx, obj);
    return this.store.record(uuid)!;
  }

  private createAnswer(obj: StoredObject, baseUrl: string): Record<string, unknown> {
    const out: Record<string, unknown> = {
      name: obj.fq_name.at(-1),
      fq_name: obj.fq_name,
      uuid: obj.uuid,
      href: href(baseUrl, obj.type, obj.uuid),
    };
    if (obj.parent_type && obj.parent_uuid) {
      out.parent_type = obj.parent_type;
      out.parent_uuid = obj.parent_uuid;
      out.parent_href = href(baseUrl, obj.parent_type, obj.parent_uuid);
    }
    // Addresses the server chose. The real server returns them only on a read; they come here as well so a
    // client need not read back, but a client meant for real TF must not rely on them (README.md).
    for (const key of ["instance_ip_address", "subnet_uuid", "floating_ip_address"])
      if (obj.props[key] !== undefined) out[key] = obj.props[key];
    return out;
  }

  private placeUnderParent(obj: StoredObject, givenParentType: unknown): void {
    const allowed = parentTypes(obj.type);
    // validate_parent_type: types without a parent list config-root as their only allowed parent.
    const shown = allowed.length === 0 ? [configRoot] : allowed;
    if (givenParentType !== undefined && givenParentType !== null && givenParentType !== "") {
      if (typeof givenParentType !== "string" || !shown.includes(givenParentType))
        throw badRequest(
          `Invalid parent type: ${pyStr(givenParentType)}. Allowed types: ${pyList([...shown])}`,
        );
    }
    if (allowed.length === 0) return; // virtual-machine, instance-ip: no parent
    let parentType = allowed[0]!;
    if (typeof givenParentType === "string" && givenParentType !== "") parentType = givenParentType;
    if (parentType === configRoot) {
      if (obj.fq_name.length !== 1)
        throw badRequest(`Bad Request: ${obj.type} hangs under config-root: its fq_name has one element`);
      return;
    }
    const parentFq = obj.fq_name.slice(0, -1);
    const parent = parentFq.length > 0 ? this.store.recordByFqName(parentType, parentFq) : undefined;
    if (!parent) throw badRequest(`Parent ${pyList(parentFq)} type ${parentType} does not exist`);
    obj.parent_type = parentType;
    obj.parent_uuid = parent.uuid;
  }

  /** Splits a create/update body into properties and resolved refs (by uuid or by `to` fq_name). */
  private splitBody(
    type: string,
    body: Record<string, unknown>,
    op: "create" | "update",
  ): { props: Record<string, unknown>; refs: Record<string, StoredRef[]> } {
    const props: Record<string, unknown> = {};
    const refs: Record<string, StoredRef[]> = {};
    for (const [key, value] of Object.entries(body)) {
      if (identityKeys.has(key) || key.endsWith("_back_refs") || childKeys.has(key)) continue;
      const toType = refKeyTarget(key);
      if (toType === undefined) {
        // Keys that are not properties of the type are dropped, as the real server stores prop_fields only.
        if (isProperty(type, key)) props[key] = value;
        continue;
      }
      if (value === null || (Array.isArray(value) && value.length === 0)) {
        refs[toType] = [];
        continue;
      }
      if (!isResourceType(toType))
        throw badRequest(`Bad reference in ${op}: ${type} cannot refer to ${toType} (not emulated)`);
      if (!Array.isArray(value)) throw badRequest(`Bad reference in ${op}: ${key} must be a list`);
      // The real server prints the whole request dict when a ref's target is missing.
      const unknown = (): VncHttpError =>
        badRequest(
          op === "create"
            ? `Unknown reference in resource create ${pyRepr(body)}.`
            : `Unknown reference in resource update ${underscored(type)} ${pyRepr(body)}.`,
        );
      refs[toType] = this.resolveRefs(toType, value, op, unknown);
    }
    return { props, refs };
  }

  private resolveRefs(toType: string, list: unknown[], op: string, unknown: () => VncHttpError): StoredRef[] {
    const out: StoredRef[] = [];
    for (const item of list) {
      if (!isRecord(item)) throw badRequest(`Bad reference in ${op}: ${JSON.stringify(item)} is not a ref`);
      let target: StoredObject | undefined;
      if (typeof item.uuid === "string" && item.uuid !== "") {
        target = this.store.record(item.uuid);
        if (target?.type !== toType) throw unknown();
      } else if (isStringArray(item.to)) {
        target = this.store.recordByFqName(toType, item.to);
        if (!target) throw unknown();
      } else {
        throw badRequest(
          `Bad reference in ${op}: ${toType} ref ${JSON.stringify(item)} has neither uuid nor to`,
        );
      }
      const attr = isRecord(item.attr) ? structuredClone(item.attr) : null;
      const at = out.findIndex((r) => r.uuid === target.uuid);
      if (at >= 0) out[at] = { uuid: target.uuid, attr };
      else out.push({ uuid: target.uuid, attr });
    }
    return out;
  }

  // ---------------------------------------------------------------- read

  /** GET and PUT answer a missing uuid with NoIdError's text; DELETE with its own (see delete). */
  private mustGet(
    type: string,
    uuid: string,
    missing = (u: string): VncHttpError => notFound(`Unknown id: ${u}`),
  ): StoredObject {
    const obj = this.store.record(uuid);
    if (!obj) throw missing(uuid);
    if (obj.type !== type) throw wrongType(type, uuid);
    return obj;
  }

  private read(type: string, uuid: string, req: ApiRequest): ApiResponse {
    const obj = this.mustGet(type, uuid);
    const etag = `"${String((obj.props.id_perms as Record<string, unknown>).last_modified)}"`;
    if (req.ifNoneMatch && req.ifNoneMatch === etag) return { status: 304, headers: { ETag: etag } };
    const q = req.query;
    const fields = q.get("fields");
    const view = renderObject(this.store, obj, {
      baseUrl: req.baseUrl,
      fields: fields ? new Set(fields.split(",")) : undefined,
      backRefs: !q.has("exclude_back_refs"),
      children: !q.has("exclude_children"),
      hrefs: !q.has("exclude_hrefs"),
    });
    return { status: 200, json: { [type]: view }, headers: { ETag: etag } };
  }

  // ---------------------------------------------------------------- update

  update(type: string, uuid: string, body: Record<string, unknown>): void {
    const prev = this.mustGet(type, uuid);
    if (body.fq_name !== undefined && JSON.stringify(body.fq_name) !== JSON.stringify(prev.fq_name))
      throw badRequest(`Bad Request: fq_name of ${type} ${uuid} cannot change (is ${pyList(prev.fq_name)})`);
    if (body.uuid !== undefined && body.uuid !== uuid)
      throw badRequest(`Bad Request: uuid ${show(body.uuid)} in the body differs from the URL's ${uuid}`);
    validateRequest(type, body, "http_put");
    const { props, refs } = this.splitBody(type, body, "update");
    const next: StoredObject = structuredClone(prev);
    for (const [key, value] of Object.entries(props)) {
      if (key === "id_perms" || key === "perms2") continue;
      if (value === null) delete next.props[key];
      else next.props[key] = value;
    }
    for (const [toType, list] of Object.entries(refs)) {
      if (list.length === 0) delete next.refs[toType];
      else next.refs[toType] = list;
    }
    const prevPerms = prev.props.id_perms as Record<string, unknown>;
    next.props.id_perms = idPerms(
      { ...prevPerms, ...(isRecord(props.id_perms) ? props.id_perms : {}) },
      String(prevPerms.created),
      now(),
    );
    next.props.perms2 = perms2({
      ...(prev.props.perms2 as object),
      ...(isRecord(props.perms2) ? props.perms2 : {}),
    });
    next.props.display_name ??= next.fq_name.at(-1);
    typeHooks[type]?.beforeUpdate?.(this.ctx, prev, next, body);
    storeWhole(next, Object.keys(props));
    this.store.replace(next);
  }

  // ---------------------------------------------------------------- delete

  delete(type: string, uuid: string, baseUrl: string): void {
    const obj = this.mustGet(type, uuid, idNotFound);
    const children = this.store.childrenOf(uuid);
    // Server-made children and childless `default-<type>` ones go with the parent (api_server.py skips
    // `default-*` children in this check); anything else must be deleted first.
    const isDefault = (c: StoredObject): boolean =>
      c.auto === true ||
      (c.fq_name.at(-1) === `default-${c.type}` && this.store.childrenOf(c.uuid).length === 0);
    const blocking = children.filter((c) => !isDefault(c));
    if (blocking.length > 0) throw childrenPresent(blocking.map((c) => href(baseUrl, c.type, c.uuid)));

    // Default children go with their parent, so refs to them block the delete as well.
    const going = new Set([uuid, ...children.map((c) => c.uuid)]);
    // A ref relaxed for delete (/ref-relax-for-delete) does not block; it is removed with the target.
    const pairs = [obj, ...children].flatMap((o) =>
      this.store.referrersOf(o.uuid).map((r) => ({ r, to: o.uuid })),
    );
    const relaxed = pairs.filter(({ r, to }) => !going.has(r.uuid) && this.store.isRelaxed(r.uuid, to));
    const referrers = pairs
      .filter(({ r, to }) => !going.has(r.uuid) && !this.store.isRelaxed(r.uuid, to))
      .map(({ r }) => r)
      .filter((r, i, all) => all.findIndex((x) => x.uuid === r.uuid) === i);
    if (referrers.length > 0) throw stillReferred(referrers.map((r) => href(baseUrl, r.type, r.uuid)));
    for (const { r, to } of relaxed) {
      const target = this.store.record(to)!;
      this.setRef(this.store.record(r.uuid)!, target.type, to, "DELETE", null);
    }

    const removed = [...children, obj];
    for (const c of children) this.store.remove(c.uuid);
    this.store.remove(uuid);
    // Server-made objects only the removed ones referred to (a VRF's auto route target) go with them, as
    // the schema transformer deletes them in real TF.
    const targets = removed.flatMap((o) =>
      Object.values(o.refs)
        .flat()
        .map((r) => r.uuid),
    );
    for (const t of new Set(targets)) {
      const rec = this.store.record(t);
      if (rec?.auto && this.store.referrersOf(t).length === 0) this.store.remove(t);
    }
  }

  // ---------------------------------------------------------------- list

  list(type: string, q: URLSearchParams, baseUrl: string): unknown {
    const key = plural(type);
    const csv = (name: string): string[] | undefined =>
      q.has(name) ? (q.get(name) ?? "").split(",").filter((s) => s !== "") : undefined;

    let parents = csv("parent_id");
    const parentFq = q.get("parent_fq_name_str");
    if (parentFq !== null) {
      const types = q.get("parent_type") ? [q.get("parent_type")!] : parentTypes(type);
      parents = types.flatMap((t) => this.store.recordByFqName(t, parentFq.split(":"))?.uuid ?? []);
    }
    const backRefIds = csv("back_ref_id");
    let objUuids = csv("obj_uuids");
    const fqNames = csv("fq_names");
    if (fqNames) {
      const found = fqNames.flatMap((s) => this.store.recordByFqName(type, s.split(":"))?.uuid ?? []);
      if (found.length === 0) return { [key]: [] };
      objUuids = [...(objUuids ?? []), ...found];
    }
    const filters = parseFilters(q.get("filters"));

    const parentSet = parents && new Set(parents);
    const objSet = objUuids && new Set(objUuids);
    const backRefSet = backRefIds && new Set(backRefIds);
    const matches = this.store.records(type).filter((o) => {
      if (parentSet && !(o.parent_uuid && parentSet.has(o.parent_uuid))) return false;
      if (objSet && !objSet.has(o.uuid)) return false;
      if (backRefSet && !Object.values(o.refs).some((rs) => rs.some((r) => backRefSet.has(r.uuid))))
        return false;
      return filters.every(([field, values]) => values.some((v) => matchesFilter(o, field, v)));
    });

    if ((q.get("count") ?? "").toLowerCase().includes("true")) return { [key]: { count: matches.length } };
    const hrefs = !q.has("exclude_hrefs");
    const fieldList = csv("fields");
    const fields = fieldList && new Set(fieldList);
    const detail = (q.get("detail") ?? "").toLowerCase().includes("true");
    const items = matches.map((o): unknown => {
      if (detail) {
        const view = renderObject(this.store, o, { baseUrl, hrefs, backRefs: false, children: false });
        if (fields) Object.assign(view, renderObject(this.store, o, { baseUrl, hrefs, fields }));
        return { [type]: view };
      }
      const entry: VncView = {
        ...(hrefs ? { href: href(baseUrl, type, o.uuid) } : {}),
        fq_name: [...o.fq_name],
        uuid: o.uuid,
      };
      if (fields) {
        const view = renderObject(this.store, o, { baseUrl, hrefs, fields });
        for (const f of fields) if (f in view) entry[f] = view[f];
      }
      return entry;
    });
    return { [key]: items };
  }

  // ---------------------------------------------------------------- actions

  private action(name: string, req: ApiRequest): ApiResponse {
    switch (name) {
      case "prop-collection-get":
        return { status: 200, json: propCollectionGet(this.store, req.query) };
      case "prop-collection-update":
        propCollectionUpdate(this.store, req.body, (prev, next, fields) =>
          this.commitCollections(prev, next, fields),
        );
        return { status: 200, text: "" };
      case "useragent-kv": {
        const answer = useragentKv(this.store, req.body);
        return answer ? { status: 200, json: answer } : { status: 200, text: "" };
      }
      case "list-bulk-collection": {
        const { type, query } = bulkListQuery(req.body);
        return { status: 200, json: this.list(type, query, req.baseUrl) };
      }
      default:
        return { status: 200, json: this.nameAction(name, req.body) };
    }
  }

  /** Stores a prop-collection-update's result: last_modified moves, the type's update checks run. */
  private commitCollections(prev: StoredObject, next: StoredObject, fields: string[]): void {
    const perms = next.props.id_perms as Record<string, unknown>;
    next.props.id_perms = { ...perms, last_modified: now() };
    const given: Record<string, unknown> = {};
    for (const f of fields) given[f] = next.props[f] ?? null;
    typeHooks[next.type]?.beforeUpdate?.(this.ctx, prev, next, given);
    this.store.replace(next);
  }

  private nameAction(name: string, body: unknown): unknown {
    if (!isRecord(body)) throw badRequest(`Bad Request: /${name} needs a JSON object body`);
    switch (name) {
      case "fqname-to-id": {
        if (typeof body.type !== "string" || !isStringArray(body.fq_name))
          throw badRequest('Bad Request: /fqname-to-id needs {"type": "...", "fq_name": [...]}');
        const obj = this.store.recordByFqName(hyphenated(body.type), body.fq_name);
        if (!obj) throw nameNotFound(body.fq_name);
        return { uuid: obj.uuid };
      }
      case "id-to-fqname": {
        if (typeof body.uuid !== "string")
          throw badRequest('Bad Request: /id-to-fqname needs {"uuid": "..."}');
        const obj = this.store.record(body.uuid);
        if (!obj) throw notFound(`UUID ${body.uuid} not found`);
        return { fq_name: obj.fq_name, type: obj.type };
      }
      case "ref-update":
        return this.refUpdate(body);
      default: {
        // ref-relax-for-delete, with api_server.py's texts.
        const from = body.uuid;
        const to = body["ref-uuid"];
        if (from === undefined || from === null || to === undefined || to === null)
          throw badRequest(
            `Bad Request: Both uuid and ref-uuid should be specified: ${pyStr(from ?? null)}, ${pyStr(to ?? null)}.`,
          );
        if (typeof from !== "string" || !this.store.record(from))
          throw notFound(`uuid ${pyStr(from)} not found`);
        this.store.relax(from, pyStr(to));
        return { uuid: from };
      }
    }
  }

  private refUpdate(body: Record<string, unknown>): { uuid: string } {
    const { type, uuid, operation } = body;
    const refTypeRaw = body["ref-type"];
    if (typeof type !== "string" || typeof uuid !== "string" || typeof refTypeRaw !== "string")
      throw badRequest('Bad Request: /ref-update needs "type", "uuid", "ref-type" and "operation"');
    if (operation !== "ADD" && operation !== "DELETE")
      throw badRequest(`Bad Request: ref-update operation must be ADD or DELETE, not ${show(operation)}`);
    const obj = this.store.record(uuid);
    if (!obj) throw notFound(`UUID ${uuid} not found`);
    if (obj.type !== hyphenated(type)) throw wrongType(hyphenated(type), uuid);
    const refType = hyphenated(refTypeRaw);
    if (!isResourceType(refType)) throw badRequest(`Bad Request: unknown ref-type ${refTypeRaw}`);

    const givenRefUuid = body["ref-uuid"];
    let refUuid: string;
    if (typeof givenRefUuid === "string" && givenRefUuid !== "") refUuid = givenRefUuid;
    else {
      const fq = body["ref-fq-name"];
      if (!isStringArray(fq)) throw badRequest('Bad Request: /ref-update needs "ref-uuid" or "ref-fq-name"');
      const target = this.store.recordByFqName(refType, fq);
      if (!target) throw nameNotFound(fq);
      refUuid = target.uuid;
    }
    const target = this.store.record(refUuid);
    if (operation === "ADD" && target?.type !== refType) throw notFound(`UUID ${refUuid} not found`);
    const attr = isRecord(body.attr) ? structuredClone(body.attr) : null;
    this.setRef(obj, refType, refUuid, operation, attr, true);
    return { uuid };
  }

  /** Adds (or re-attributes) or removes one ref and stores the object. */
  private setRef(
    obj: StoredObject,
    refType: string,
    refUuid: string,
    op: "ADD" | "DELETE",
    attr: Record<string, unknown> | null,
    /** Run the type's update checks, as the real ref-update does (with the whole new ref list). */
    checked = false,
  ): void {
    const prev = this.store.record(obj.uuid)!;
    const next: StoredObject = structuredClone(prev);
    const list = (next.refs[refType] ?? []).filter((r) => op === "ADD" || r.uuid !== refUuid);
    if (op === "ADD") {
      const at = list.findIndex((r) => r.uuid === refUuid);
      if (at >= 0) list[at] = { uuid: refUuid, attr };
      else list.push({ uuid: refUuid, attr });
    }
    if (list.length > 0) next.refs[refType] = list;
    else delete next.refs[refType];
    const perms = next.props.id_perms as Record<string, unknown>;
    next.props.id_perms = { ...perms, last_modified: now() };
    if (checked) typeHooks[next.type]?.beforeUpdate?.(this.ctx, prev, next, { [refsKey(refType)]: list });
    this.store.replace(next);
  }
}

function envelope(type: string, body: unknown): Record<string, unknown> {
  const inner = isRecord(body) ? body[type] : undefined;
  if (!isRecord(inner)) throw badRequest(`Bad Request: the body must be {"${type}": {...}}`);
  return inner;
}

function notAllowed(req: ApiRequest): ApiResponse {
  return { status: 405, text: `Method ${req.method} not allowed on ${req.path}` };
}

/** `filters=field==value,field2==value2`: values of one field are alternatives, fields must all match. */
function parseFilters(raw: string | null): [string, string[]][] {
  if (!raw) return [];
  const byField = new Map<string, string[]>();
  for (const part of raw.split(",")) {
    const at = part.indexOf("==");
    if (at <= 0) throw badRequest(`Invalid filter ${raw}`);
    const field = part.slice(0, at);
    const value = part.slice(at + 2).replace(/^"(.*)"$/, "$1");
    byField.set(field, [...(byField.get(field) ?? []), value]);
  }
  return [...byField.entries()];
}

function matchesFilter(o: StoredObject, field: string, want: string): boolean {
  const have = field === "uuid" ? o.uuid : field === "name" ? o.fq_name.at(-1) : o.props[field];
  if (have === undefined || have === null) return false;
  if (typeof have === "object") return JSON.stringify(have) === want;
  return show(have) === want;
}
