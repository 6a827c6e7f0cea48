// Request validation as the real server's _validate_props_in_request / _validate_refs_in_request do it,
// driven by the schema's type table (props.ts): simple values by xsd type (integers coerced with int(),
// ranges, booleans, strings, enums), complex values field by field, unknown fields refused, falsy values
// skipped. It edits the body in place as the real server does (coerced integers, normalized subnets), and
// its error texts are the real ones: clients and tests match on them.
import { badRequest } from "./errors.js";
import { parsePrefix } from "./ip.js";
import { complexTypes, refAttrTypes, resourceProps, type FieldSpec } from "./props.js";
import { pyRepr, pyStr } from "./pyrepr.js";
import { refsKey } from "./schema.js";

/** A validation failure; `message` is Python's str() of the exception the real server raises. */
class Invalid extends Error {}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Python truthiness of a JSON value: None, false, 0, "", [] and {} are skipped by the real checks. */
export const falsy = (v: unknown): boolean =>
  v === null ||
  v === undefined ||
  v === false ||
  v === 0 ||
  v === "" ||
  (Array.isArray(v) && v.length === 0) ||
  (isRecord(v) && Object.keys(v).length === 0);

const classRepr = (name: string): string => `<class 'vnc_api.gen.resource_xsd.${name}'>`;

/** Python's type name of a JSON value, for "'str' object has no attribute 'items'" style texts. */
export function pyType(v: unknown): string {
  if (typeof v === "string") return "str";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (Array.isArray(v)) return "list";
  if (v === null || v === undefined) return "NoneType";
  return "dict";
}

/** Python's int() of a JSON value, or undefined where int() raises. */
function pyInt(v: unknown): number | undefined {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number") return Number.isFinite(v) ? Math.trunc(v) : undefined;
  if (typeof v === "string" && /^\s*[+-]?\d+(_\d+)*\s*$/.test(v)) return Number(v.replace(/_/g, ""));
  return undefined;
}

function validateSimple(name: string, spec: FieldSpec, value: unknown): unknown {
  if (value === null || value === undefined) return value;
  if (spec.t === "integer") {
    const n = typeof value === "number" && Number.isInteger(value) ? value : pyInt(value);
    if (n === undefined) throw new Invalid(`${name}: integer value expected instead of ${pyStr(value)}`);
    const [min, max] = spec.r ?? [];
    if (spec.r && !(Number(min) <= n && n <= Number(max)))
      throw new Invalid(`${name}: value must be between ${String(min)} and ${String(max)}`);
    return typeof value === "boolean" ? value : n; // a bool is an int to Python and stays as it is
  }
  if (spec.t === "boolean") {
    if (typeof value !== "boolean")
      throw new Invalid(`${name}: true/false expected instead of ${pyStr(value)}`);
    return value;
  }
  if (spec.st === "CommunityAttribute") return communityAttribute(value);
  if (spec.st === "ServiceInterfaceType") return serviceInterfaceType(value);
  if (typeof value !== "string")
    throw new Invalid(`${name}: string value expected instead of ${pyStr(value)}`);
  if (spec.r && !spec.r.includes(value))
    throw new Invalid(`${name}: value must be one of ${pyRepr(spec.r.map(String))}`);
  return value;
}

function communityAttribute(value: unknown): unknown {
  const s = String(value);
  if (["no-export", "accept-own", "no-advertise", "no-export-subconfed", "no-reoriginate"].includes(s))
    return value;
  if (!/^(\.?\*?|[0-9]+):(\.?\*?|[0-9]+)/.test(s))
    throw new Invalid(`Invalid community format ${s}. Change to 'number:number'`);
  const asn = s.split(":")[0]!;
  if (/^\d+$/.test(asn) && Number(asn) > 65535)
    throw new Invalid(`Out of range ASN value ${s}. ASN values cannot exceed 65535.`);
  return value;
}

function serviceInterfaceType(value: unknown): unknown {
  const s = String(value);
  if (["management", "left", "right"].includes(s) || /^other[0-9]*/.test(s)) return value;
  throw new Invalid(
    `Invalid service interface type ${s}. Valid values are: management|left|right|other[0-9]*`,
  );
}

/** _validate_subnet_type: the prefix must parse; it is rewritten as network address and integer length. */
function validateSubnet(item: unknown): void {
  if (!isRecord(item)) throw new Invalid("Subnet type is invalid");
  for (const key of ["ip_prefix", "ip_prefix_len"]) if (!(key in item)) throw new Invalid(`'${key}'`); // Python's KeyError text
  const cidr = `${pyStr(item.ip_prefix)}/${pyStr(item.ip_prefix_len)}`;
  const p = parsePrefix(item.ip_prefix, item.ip_prefix_len);
  if (!p) throw new Invalid(`Subnet type '${cidr}' is invalid`);
  item.ip_prefix = p.cidr.split("/")[0];
  item.ip_prefix_len = p.len;
}

/** _validate_allowed_address_pair_prefix_len with the default aap_prefix_len_limit of 24. */
function validateAllowedAddressPair(item: unknown): void {
  if (!isRecord(item)) throw new Invalid("string indices must be integers");
  if (!("address_mode" in item)) throw new Invalid("'address_mode'");
  if (item.address_mode !== "active-standby") return;
  const ip = isRecord(item.ip) ? item.ip : {};
  const len = Number(ip.ip_prefix_len);
  const v6 = typeof ip.ip_prefix === "string" && ip.ip_prefix.includes(":");
  if (v6 && len < 120) throw new Invalid("IPv6 Prefix length lesser than 120 is is not acceptable");
  if (!v6 && len < 24)
    throw new Invalid(
      `IPv4 Prefix length lesser than 24:it is ${pyStr(ip.ip_prefix_len)} - is not acceptable`,
    );
}

/** _validate_complex_type: every key must be a field of `cls`; values are checked and coerced in place. */
function validateComplex(cls: string, body: unknown): void {
  if (body === null || body === undefined) return;
  if (!isRecord(body)) throw new Invalid(`'${pyType(body)}' object has no attribute 'items'`);
  const fields = complexTypes[cls] ?? {};
  for (const [key, value] of Object.entries(body)) {
    const spec = fields[key];
    if (!spec) throw new Invalid(`class ${classRepr(cls)} does not have field ${key}`);
    if (falsy(value)) continue;
    let values: unknown[];
    if (spec.a) {
      if (!Array.isArray(value))
        throw new Invalid(`Field ${key} must be a list. Received value: ${pyStr(value)}`);
      values = value;
    } else values = [value];
    if (complexTypes[spec.t]) {
      for (const item of values) {
        if (spec.t === "AllowedAddressPair") validateAllowedAddressPair(item);
        if (spec.t === "SubnetType") validateSubnet(item);
        validateComplex(spec.t, item);
      }
    } else {
      for (let i = 0; i < values.length; i++) values[i] = validateSimple(key, spec, values[i]);
    }
    if (!spec.a) body[key] = values[0];
  }
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Checks the properties and ref attrs of a create (`api` "create") or update body (`api` "http_put", or the
 * action's name) and throws the real server's 400. Unknown keys are left alone: the caller drops them.
 */
export function validateRequest(type: string, body: Json, api: string): void {
  const props = resourceProps[type] ?? {};
  for (const [name, spec] of Object.entries(props)) {
    const value = body[name];
    if (falsy(value)) continue;
    if (!complexTypes[spec.t]) {
      try {
        body[name] = validateSimple(name, spec, value);
      } catch (err) {
        throw badRequest(`Bad property in ${api}: Error validating property ${errorText(err)}`);
      }
      continue;
    }
    if (!isRecord(value))
      throw badRequest(
        `Bad property in ${api}: Error in property ${name} type ${classRepr(spec.t)} value of ${pyStr(value)} `,
      );
    try {
      validateComplex(spec.t, value);
    } catch (err) {
      throw badRequest(
        `Bad property in ${api}: Error validating property ${name} value ${pyRepr(value)} ${errorText(err)}`,
      );
    }
  }

  for (const [refType, attrCls] of Object.entries(refAttrTypes[type] ?? {})) {
    const key = refsKey(refType);
    const list = body[key];
    if (falsy(list) || !Array.isArray(list)) continue;
    for (const ref of list) {
      try {
        if (!isRecord(ref)) throw new Invalid(`${pyType(ref)} indices must be integers or slices, not str`);
        if (!("attr" in ref)) throw new Invalid("'attr'"); // the real server reads ref['attr']
        validateComplex(attrCls, ref.attr);
      } catch (err) {
        throw badRequest(
          `Bad reference in ${api}: Error validating reference ${key} value ${pyRepr(ref)} ${errorText(err)}`,
        );
      }
    }
  }
}

/** Whether `key` is a property of `type` in the schema (anything else in a body is dropped, as TF does). */
export const isProperty = (type: string, key: string): boolean =>
  Object.hasOwn(resourceProps[type] ?? {}, key);

/**
 * _validate_complex_type on one element of a list/map property (prop-collection-update): the error text
 * (Python's str() of the exception, which the real server answers bare), or undefined when valid.
 * Coerces the value in place as the real check does.
 */
export function elementError(cls: string, value: unknown): string | undefined {
  try {
    validateComplex(cls, value);
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}
