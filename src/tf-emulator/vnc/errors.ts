// Errors the emulated API answers with: an HTTP status and a plain-text body, exactly as the real server's
// `HttpError(code, msg)` (spec §2.3). Clients match on the texts, so each helper spells one of them.
import { pyList } from "./schema.js";

export class VncHttpError extends Error {
  constructor(
    readonly status: number,
    readonly text: string,
  ) {
    super(text);
    this.name = `VncHttpError(${status})`;
  }
}

export const badRequest = (text: string): VncHttpError => new VncHttpError(400, text);
export const conflict = (text: string): VncHttpError => new VncHttpError(409, text);
export const notFound = (text: string): VncHttpError => new VncHttpError(404, text);

export const idNotFound = (uuid: string): VncHttpError => notFound(`ID ${uuid} does not exist`);
export const wrongType = (type: string, uuid: string): VncHttpError =>
  notFound(`No ${type} object found for id ${uuid}`);
export const nameNotFound = (fqName: readonly string[]): VncHttpError =>
  notFound(`Name ${pyList(fqName)} not found`);

export const fqNameExists = (fqName: readonly string[], uuid: string): VncHttpError =>
  conflict(`${pyList(fqName)} already exists with uuid: ${uuid}`);
export const uuidExists = (uuid: string, fqName: readonly string[]): VncHttpError =>
  conflict(`${uuid} already exists with fq_name: ${pyList(fqName)}`);
export const stillReferred = (hrefs: readonly string[]): VncHttpError =>
  conflict(`Delete when resource still referred: ${pyList(hrefs)}`);
export const childrenPresent = (hrefs: readonly string[]): VncHttpError =>
  conflict(`Delete when children still present: ${pyList(hrefs)}`);
export const ipInUse = (): VncHttpError => conflict("IP address already in use");

export const exhausted = (
  vnFqName: readonly string[],
  subnets: readonly string[],
  status = 400,
): VncHttpError =>
  new VncHttpError(status, `Virtual-Network(${pyList(vnFqName)}) has exhausted subnet(${pyList(subnets)})`);

/** A client-supplied value in an error text: strings as they are, anything else as JSON. */
export const show = (v: unknown): string => (typeof v === "string" ? v : (JSON.stringify(v) ?? String(v)));

/**
 * Where the real server fails with an unhandled Python exception (bottle answers 500), the emulator answers
 * 500 with that exception's type and text, so the failure is visible and matches TF's status.
 */
export const pythonCrash = (text: string): VncHttpError => new VncHttpError(500, text);
