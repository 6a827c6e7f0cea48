// The emulated VNC config API server (TF config-api on 8082): HTTP transport, optional keystone, the state
// file, and the seeded defaults around the transport-free API of api.ts. A stand-in for development and CI,
// not a TF replacement: one process, no schema transformer, no control node (see README.md).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { rmSync } from "node:fs";
import { VncApi, type ApiResponse } from "./api.js";
import { SnatMonitor } from "./svcmonitor.js";
import { KeystoneEmulator } from "./keystone.js";
import { seedDefaults, type Compute } from "./seed.js";
import { StateFile } from "./statefile.js";
import { VncStore } from "./store.js";

export { VncStore } from "./store.js";
export type { StoreEvent, StoredObject, VncView } from "./store.js";

export interface VncServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8082; 0 picks a free port. */
  port?: number;
  /** JSON file holding the state across restarts. */
  stateFile?: string;
  /** When set, `POST /v3/auth/tokens` issues tokens and every other call needs a valid X-Auth-Token. */
  keystone?: { username: string; password: string };
  /** One virtual-router per compute: fq_name [default-global-system-config, name], vhost0 address ip. */
  computes?: Compute[];
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Also serve on this unix socket (tests reach the API from outside its network namespace this way). */
  unixSocket?: string;
}

export interface RunningVncServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  store: VncStore;
  /** Present in keystone mode. */
  keystone?: KeystoneEmulator;
}

const maxBodyBytes = 16 * 1024 * 1024;

export async function startVncServer(opts: VncServerOptions): Promise<RunningVncServer> {
  const log = opts.log ?? ((): void => {});
  const host = opts.host ?? "127.0.0.1";
  const store = new VncStore();
  const state = opts.stateFile
    ? new StateFile(opts.stateFile, (err) =>
        log("VNC emulator: state file write failed", { error: err.message }),
      )
    : undefined;
  const saved = await state?.load();
  if (saved) store.load(saved);
  if (state) {
    store.on(() => state.schedule(() => store.snapshot()));
    store.onKvChange(() => state.schedule(() => store.snapshot()));
  }

  const api = new VncApi(store);
  seedDefaults(api, opts.computes ?? []);
  // svc-monitor's SNAT instances follow the logical routers: checked after every successful write.
  const snat = new SnatMonitor(api, log);
  snat.reconcile();
  const keystone = opts.keystone ? new KeystoneEmulator(opts.keystone) : undefined;

  const server = createServer((req, res) => {
    const started = Date.now();
    readBody(req).then(
      (raw) => {
        let answer: ApiResponse;
        try {
          answer = serve(req, raw);
        } catch (err) {
          answer = {
            status: 500,
            text: `Internal error in the TF emulator: ${(err as Error).stack ?? String(err)}`,
          };
        }
        if (req.method !== "GET" && answer.status < 400) snat.reconcile();
        send(res, answer);
        // Mutations and failures only: the agent and the forwarder poll with GETs.
        if (req.method !== "GET" || answer.status >= 400)
          log("VNC emulator request", {
            method: req.method,
            path: req.url,
            status: answer.status,
            ms: Date.now() - started,
          });
      },
      (err: Error) => send(res, { status: 413, text: `Bad Request: ${err.message}` }),
    );
  });

  function serve(req: IncomingMessage, raw: string): ApiResponse {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://emulator");
    const baseUrl = `http://${req.headers.host ?? `${host}:${port}`}`;
    let body: unknown;
    if (raw.trim() !== "") {
      try {
        body = JSON.parse(raw);
      } catch (err) {
        return { status: 400, text: `Bad Request: body is not JSON (${(err as Error).message})` };
      }
    }
    if (keystone) {
      if (url.pathname === "/v3/auth/tokens") {
        if (method !== "POST")
          return { status: 405, text: `Method ${method} not allowed on /v3/auth/tokens` };
        return keystone.issue(body);
      }
      const token = req.headers["x-auth-token"];
      if (!keystone.valid(typeof token === "string" ? token : undefined))
        return {
          status: 401,
          text: "Authentication required",
          headers: { "WWW-Authenticate": `Keystone uri="${baseUrl}/v3"` },
        };
    }
    const inm = req.headers["if-none-match"];
    return api.handle({
      method,
      path: url.pathname,
      query: url.searchParams,
      body,
      baseUrl,
      ifNoneMatch: typeof inm === "string" ? inm : undefined,
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8082, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const local = opts.unixSocket
    ? createServer(server.listeners("request")[0] as Parameters<typeof createServer>[0])
    : undefined;
  if (local && opts.unixSocket) {
    rmSync(opts.unixSocket, { force: true });
    await new Promise<void>((resolve, reject) => {
      local.once("error", reject);
      local.listen(opts.unixSocket, () => resolve());
    });
  }
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  const url = `http://${urlHost.includes(":") ? `[${urlHost}]` : urlHost}:${port}`;
  store.baseUrl = url;
  log("VNC emulator listening", { url, stateFile: opts.stateFile, keystone: keystone !== undefined });

  let stopped: Promise<void> | undefined;
  return {
    url,
    port,
    store,
    keystone,
    stop: () =>
      (stopped ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        const localClosed = new Promise<void>((resolve) =>
          local ? local.close(() => resolve()) : resolve(),
        );
        local?.closeAllConnections();
        await closed;
        await localClosed;
        await state?.flush();
      })()),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBodyBytes) {
        reject(new Error(`body larger than ${maxBodyBytes} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, a: ApiResponse): void {
  if (res.headersSent) return;
  const headers: Record<string, string> = { ...a.headers };
  let payload = "";
  if (a.json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(a.json);
  } else if (a.text !== undefined && (a.text !== "" || a.status >= 400)) {
    headers["Content-Type"] = "text/plain; charset=utf-8";
    payload = a.text;
  }
  headers["Content-Length"] = String(Buffer.byteLength(payload));
  res.writeHead(a.status, headers);
  res.end(payload);
}
