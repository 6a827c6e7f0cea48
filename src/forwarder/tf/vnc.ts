// Client for the OpenSDN / Tungsten Fabric VNC config API (REST on 8082, spec §2). It speaks the wire shapes
// directly (hyphenated types in URLs and envelopes, underscored JSON keys, plain-text errors), retries what
// the official Python client retries (502/503 and network errors), re-authenticates once on a 401 in
// keystone mode, and reuses connections (keep-alive). Every failure is a VncError naming the method, the
// path, the status and the server's text, so a caller can log it as is and match on `status`.
import {
  Agent as HttpAgent,
  request as httpRequest,
  STATUS_CODES,
  type IncomingHttpHeaders,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { timedTfCall } from "./metrics.js";

export type VncAuth =
  | { kind: "none" }
  /** A static X-Auth-Token. */
  | { kind: "token"; token: string }
  /** Keystone v3 password auth: POST <url>/v3/auth/tokens, the token comes back in X-Subject-Token. */
  | { kind: "keystone"; url: string; username: string; password: string; project?: string; domain?: string };

export interface VncObject {
  uuid: string;
  fq_name: string[];
  [key: string]: unknown;
}

export class VncError extends Error {
  /** HTTP status; 0 when there was no answer (connection refused, reset, timeout). */
  readonly status: number;
  /** The server's plain-text error body ("" for network errors). */
  readonly body: string;
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string, status: number, body: string, detail?: string) {
    const text = detail ?? (body.trim().slice(0, 2000) || STATUS_CODES[status] || "");
    super(status === 0 ? `VNC ${method} ${path}: ${text}` : `VNC ${method} ${path}: ${status} ${text}`);
    this.name = "VncError";
    this.status = status;
    this.body = body;
    this.method = method;
    this.path = path;
  }
}

export interface VncClientOptions {
  /** Base URL of the API, e.g. http://127.0.0.1:8082. */
  url: string;
  auth?: VncAuth;
  /** Per attempt; default 5000 ms. */
  timeoutMs?: number;
  /** Retries on 502/503 and network errors; default 2, 100 ms apart. */
  retries?: number;
  /** Reach the API through this unix socket instead of the URL's host and port (the URL still names it). */
  socketPath?: string;
}

export interface VncListQuery {
  parent_id?: string;
  back_ref_id?: string;
  detail?: boolean;
  fields?: string[];
  fq_names?: string[][];
  obj_uuids?: string[];
  filters?: string;
}

interface Answer {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
}

const retryDelayMs = 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export class VncClient {
  private readonly base: URL;
  private readonly auth: VncAuth;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 32 });
  private readonly socketPath: string | undefined;
  private token: string | undefined;
  private authenticating: Promise<string> | undefined;

  constructor(opts: VncClientOptions) {
    this.base = new URL(opts.url);
    if (this.base.protocol !== "http:" && this.base.protocol !== "https:")
      throw new Error(`VNC url ${opts.url}: only http:// and https:// are supported`);
    this.auth = opts.auth ?? { kind: "none" };
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.retries = opts.retries ?? 2;
    this.socketPath = opts.socketPath;
  }

  /** POST /<type>s; returns what the server answers about the new object (uuid, fq_name, href, parent). */
  async create(type: string, body: Record<string, unknown>): Promise<VncObject> {
    return unwrap(type, await this.call("POST", `/${type}s`, { [type]: body }), "POST", `/${type}s`);
  }

  /** Create, or read the existing object when the server says it exists (409), as kube-manager does. */
  async createOrRead(
    type: string,
    body: Record<string, unknown> & { fq_name: string[] },
  ): Promise<{ obj: VncObject; created: boolean }> {
    try {
      return { obj: await this.create(type, body), created: true };
    } catch (err) {
      if (!(err instanceof VncError && err.status === 409)) throw err;
      try {
        return { obj: await this.readByFqName(type, body.fq_name), created: false };
      } catch (readErr) {
        // 409 for another reason (its uuid is taken by another name): the create's error says so.
        if (readErr instanceof VncError && readErr.status === 404) throw err;
        throw readErr;
      }
    }
  }

  /** GET /<type>/<uuid>, with refs, back-refs and children. */
  async read(type: string, uuid: string): Promise<VncObject> {
    const path = `/${type}/${encodeURIComponent(uuid)}`;
    return unwrap(type, await this.call("GET", path), "GET", path);
  }

  async readByFqName(type: string, fqName: string[]): Promise<VncObject> {
    return this.read(type, await this.fqNameToId(type, fqName));
  }

  /** Like read, but undefined when the object does not exist. */
  async tryRead(type: string, uuid: string): Promise<VncObject | undefined> {
    try {
      return await this.read(type, uuid);
    } catch (err) {
      if (err instanceof VncError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** PUT /<type>/<uuid> with the fields to change; a ref list present replaces the stored one. */
  async update(type: string, uuid: string, body: Record<string, unknown>): Promise<void> {
    await this.call("PUT", `/${type}/${encodeURIComponent(uuid)}`, { [type]: body });
  }

  async delete(type: string, uuid: string): Promise<void> {
    await this.call("DELETE", `/${type}/${encodeURIComponent(uuid)}`);
  }

  /** Delete; false when it did not exist. */
  async deleteIfExists(type: string, uuid: string): Promise<boolean> {
    try {
      await this.delete(type, uuid);
      return true;
    } catch (err) {
      if (err instanceof VncError && err.status === 404) return false;
      throw err;
    }
  }

  async fqNameToId(type: string, fqName: string[]): Promise<string> {
    const a = await this.call("POST", "/fqname-to-id", { type, fq_name: fqName });
    if (!isRecord(a) || typeof a.uuid !== "string") throw malformed("POST", "/fqname-to-id", a);
    return a.uuid;
  }

  async idToFqName(uuid: string): Promise<{ type: string; fq_name: string[] }> {
    const a = await this.call("POST", "/id-to-fqname", { uuid });
    if (!isRecord(a) || typeof a.type !== "string" || !Array.isArray(a.fq_name))
      throw malformed("POST", "/id-to-fqname", a);
    return { type: a.type, fq_name: a.fq_name.map(String) };
  }

  async refUpdate(
    type: string,
    uuid: string,
    refType: string,
    refUuid: string,
    operation: "ADD" | "DELETE",
    attr?: Record<string, unknown> | null,
  ): Promise<void> {
    await this.call("POST", "/ref-update", {
      type,
      uuid,
      "ref-type": refType,
      "ref-uuid": refUuid,
      operation,
      attr: attr ?? null,
    });
  }

  /** GET /<type>s; full objects with `detail`, else {uuid, fq_name, href} (plus `fields`). */
  async list(type: string, query: VncListQuery = {}): Promise<VncObject[]> {
    const q = new URLSearchParams();
    if (query.parent_id) q.set("parent_id", query.parent_id);
    if (query.back_ref_id) q.set("back_ref_id", query.back_ref_id);
    if (query.detail) q.set("detail", "true");
    if (query.fields?.length) q.set("fields", query.fields.join(","));
    if (query.fq_names?.length) q.set("fq_names", query.fq_names.map((f) => f.join(":")).join(","));
    if (query.obj_uuids?.length) q.set("obj_uuids", query.obj_uuids.join(","));
    if (query.filters) q.set("filters", query.filters);
    const qs = q.toString();
    const path = `/${type}s${qs ? `?${qs}` : ""}`;
    const a = await this.call("GET", path);
    const items = isRecord(a) ? a[`${type}s`] : undefined;
    if (!Array.isArray(items)) throw malformed("GET", path, a);
    return items.map((item) =>
      query.detail ? unwrap(type, item, "GET", path) : asObject(item, "GET", path),
    );
  }

  async homepage(): Promise<{
    href: string;
    links: { link: { rel: string; href: string; name: string; method?: string } }[];
  }> {
    const a = await this.call("GET", "/");
    if (!isRecord(a) || typeof a.href !== "string" || !Array.isArray(a.links)) throw malformed("GET", "/", a);
    return a as {
      href: string;
      links: { link: { rel: string; href: string; name: string; method?: string } }[];
    };
  }

  /** Frees the keep-alive sockets; the client can still be used (new connections are opened). */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  // ---------------------------------------------------------------- transport

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let reauthenticated = false;
    for (;;) {
      const token = await this.currentToken();
      const headers: Record<string, string> = {
        "Content-Type": "application/json",
        Accept: "application/json",
      };
      if (token) headers["X-Auth-Token"] = token;
      const a = await this.send(method, this.urlFor(path), path, headers, payload);
      if (a.status === 401 && this.auth.kind === "keystone" && !reauthenticated) {
        // The token expired or the server forgot it (a restart): get a new one, once.
        if (this.token === token) this.token = undefined;
        reauthenticated = true;
        continue;
      }
      if (a.status < 200 || a.status >= 300) throw new VncError(method, path, a.status, a.body);
      if (a.body.trim() === "") return undefined;
      try {
        return JSON.parse(a.body) as unknown;
      } catch {
        throw new VncError(
          method,
          path,
          a.status,
          a.body,
          `${a.status} answer is not JSON: ${a.body.slice(0, 200)}`,
        );
      }
    }
  }

  private urlFor(path: string): URL {
    const url = new URL(this.base.href);
    const [p, q] = path.split("?", 2) as [string, string | undefined];
    url.pathname = `${this.base.pathname.replace(/\/+$/, "")}${p}`;
    url.search = q ? `?${q}` : "";
    return url;
  }

  /** One request with retries on 502/503 and network errors. `label` names it in errors. */
  private async send(
    method: string,
    url: URL,
    label: string,
    headers: Record<string, string>,
    payload: string | undefined,
  ): Promise<Answer> {
    for (let attempt = 0; ; attempt++) {
      try {
        const a = await timedTfCall("vnc", method, label, () => this.once(method, url, headers, payload));
        if ((a.status === 502 || a.status === 503) && attempt < this.retries) {
          await sleep(retryDelayMs);
          continue;
        }
        return a;
      } catch (err) {
        // A POST that may have reached the server (timeout, reset) is not repeated: a second create would
        // meet a 409 and the caller could not tell its object from someone else's.
        const unsent = ["ECONNREFUSED", "ENOENT", "EHOSTUNREACH", "ENETUNREACH"].includes(
          (err as NodeJS.ErrnoException).code ?? "",
        );
        if (attempt < this.retries && (method !== "POST" || unsent)) {
          await sleep(retryDelayMs);
          continue;
        }
        const why = err instanceof Error ? err.message : String(err);
        const tries = attempt + 1;
        throw new VncError(
          method,
          label,
          0,
          "",
          `no answer from ${url.origin}: ${why} (${tries} attempt${tries > 1 ? "s" : ""}); is the config API running and reachable?`,
        );
      }
    }
  }

  private once(
    method: string,
    url: URL,
    headers: Record<string, string>,
    payload: string | undefined,
  ): Promise<Answer> {
    const https = url.protocol === "https:";
    return new Promise<Answer>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(url, {
        method,
        agent: https ? this.httpsAgent : this.httpAgent,
        ...(this.socketPath ? { socketPath: this.socketPath } : {}),
        headers: {
          ...headers,
          "Content-Length": String(payload === undefined ? 0 : Buffer.byteLength(payload)),
        },
      });
      const timer = setTimeout(
        () => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            headers: res.headers,
          });
        });
        res.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end(payload);
    });
  }

  // ---------------------------------------------------------------- auth

  private async currentToken(): Promise<string | undefined> {
    const auth = this.auth;
    if (auth.kind === "none") return undefined;
    if (auth.kind === "token") return auth.token;
    if (this.token) return this.token;
    this.authenticating ??= this.keystoneToken(auth).finally(() => (this.authenticating = undefined));
    return this.authenticating;
  }

  private async keystoneToken(auth: Extract<VncAuth, { kind: "keystone" }>): Promise<string> {
    const base = auth.url.replace(/\/+$/, "");
    const url = new URL(base.endsWith("/v3") ? `${base}/auth/tokens` : `${base}/v3/auth/tokens`);
    const domain = { name: auth.domain ?? "Default" };
    const body = {
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: auth.username, password: auth.password, domain } },
        },
        ...(auth.project ? { scope: { project: { name: auth.project, domain } } } : {}),
      },
    };
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const a = await this.send("POST", url, url.href, headers, JSON.stringify(body));
    if (a.status !== 201 && a.status !== 200) throw new VncError("POST", url.href, a.status, a.body);
    const token = a.headers["x-subject-token"];
    if (typeof token !== "string" || token === "")
      throw new VncError(
        "POST",
        url.href,
        a.status,
        a.body,
        `${a.status} keystone answered without X-Subject-Token`,
      );
    this.token = token;
    return token;
  }
}

function malformed(method: string, path: string, answer: unknown): VncError {
  return new VncError(
    method,
    path,
    200,
    JSON.stringify(answer),
    `unexpected answer ${JSON.stringify(answer).slice(0, 300)}`,
  );
}

function asObject(v: unknown, method: string, path: string): VncObject {
  if (!isRecord(v) || typeof v.uuid !== "string" || !Array.isArray(v.fq_name))
    throw malformed(method, path, v);
  return v as VncObject;
}

/** `{"<type>": {...}}` → the inner object. */
function unwrap(type: string, answer: unknown, method: string, path: string): VncObject {
  return asObject(isRecord(answer) ? answer[type] : undefined, method, path);
}
