// Turns a stored object into the JSON the API reads out (spec §2.2): base fields, properties, refs as
// {to, href, attr, uuid}, back-refs computed from other objects' refs, and children under their plural key.
import { backRefsKey, childrenKey, refsKey } from "./schema.js";
import type { StoredObject, VncStore, VncView } from "./store.js";

export interface RenderOptions {
  baseUrl: string;
  /** Only these properties/refs/back-refs/children (the `fields=` query); base fields always come. */
  fields?: ReadonlySet<string>;
  backRefs: boolean;
  children: boolean;
  hrefs: boolean;
}

export const href = (baseUrl: string, type: string, uuid: string): string => `${baseUrl}/${type}/${uuid}`;

export function renderObject(store: VncStore, obj: StoredObject, o: Partial<RenderOptions>): VncView {
  const opts: RenderOptions = { baseUrl: "", backRefs: true, children: true, hrefs: true, ...o };
  const wanted = (key: string): boolean => !opts.fields || opts.fields.has(key);
  const link = (type: string, uuid: string): { href?: string } =>
    opts.hrefs ? { href: href(opts.baseUrl, type, uuid) } : {};

  const out: VncView = { uuid: obj.uuid, name: obj.fq_name.at(-1), fq_name: [...obj.fq_name] };
  if (obj.parent_type && obj.parent_uuid) {
    out.parent_type = obj.parent_type;
    out.parent_uuid = obj.parent_uuid;
    if (opts.hrefs) out.parent_href = href(opts.baseUrl, obj.parent_type, obj.parent_uuid);
  }
  if (opts.hrefs) out.href = href(opts.baseUrl, obj.type, obj.uuid);

  for (const [key, value] of Object.entries(obj.props)) {
    if (key === "id_perms" || key === "perms2" || wanted(key)) out[key] = structuredClone(value);
  }

  for (const [toType, refs] of Object.entries(obj.refs)) {
    const key = refsKey(toType);
    if (!wanted(key)) continue;
    out[key] = refs.map((r) => ({
      to: store.record(r.uuid)?.fq_name ?? [],
      ...link(toType, r.uuid),
      attr: structuredClone(r.attr),
      uuid: r.uuid,
    }));
  }

  if (opts.backRefs || opts.fields) {
    for (const from of store.referrersOf(obj.uuid)) {
      const key = backRefsKey(from.type);
      if (!wanted(key)) continue;
      const list = (out[key] ??= []) as unknown[];
      for (const r of from.refs[obj.type] ?? []) {
        if (r.uuid !== obj.uuid) continue;
        list.push({
          to: [...from.fq_name],
          ...link(from.type, from.uuid),
          attr: structuredClone(r.attr),
          uuid: from.uuid,
        });
      }
    }
  }

  if (opts.children || opts.fields) {
    for (const child of store.childrenOf(obj.uuid)) {
      const key = childrenKey(child.type);
      if (!wanted(key)) continue;
      const list = (out[key] ??= []) as unknown[];
      list.push({ to: [...child.fq_name], ...link(child.type, child.uuid), uuid: child.uuid });
    }
  }
  return out;
}
