// The dashboard's HTTP side (node:http, no framework): GET / the page, GET /api/graph the model as JSON,
// GET /api/events the model as Server-Sent Events — the current one on connect, then one per published change.
// Read-only; the page runs under a Content-Security-Policy that admits only its own inline script and style
// (by hash) and requests to this origin.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ListenAddress } from "../observability/metrics/address.js";
import { pageHtml, pageScript, pageStyle } from "./page.js";
import type { Graph } from "./types.js";

export interface DashboardServer {
  /** http://host:port/ as bound (a port 0 resolved). */
  url: string;
  port: number;
  /** Sends `graph` to every /api/events subscriber. */
  publish(graph: Graph): void;
  stop(): Promise<void>;
}

const sha256 = (text: string): string => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

/** Idle SSE streams get a comment this often, so proxies and browsers keep them open. */
const heartbeatMs = 15_000;

export async function startDashboardServer(
  listen: ListenAddress,
  current: () => Graph,
): Promise<DashboardServer> {
  const page = pageHtml();
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(pageScript)}`,
    `style-src ${sha256(pageStyle)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  const subscribers = new Set<ServerResponse>();
  const frame = (g: Graph): string => `event: graph\ndata: ${JSON.stringify(g)}\n\n`;

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    "/": (_req, res) => {
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": csp,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.end(page);
    },
    "/api/graph": (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(current()));
    },
    "/api/events": (req, res) => {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      res.write(frame(current()));
      subscribers.add(res);
      req.once("close", () => subscribers.delete(res));
      res.once("error", () => subscribers.delete(res));
    },
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const route = routes[path];
    if (!route) {
      res
        .writeHead(404, { "content-type": "text/plain" })
        .end("not found: the dashboard serves /, /api/graph and /api/events\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("GET only\n");
      return;
    }
    route(req, res);
  });
  const heartbeat = setInterval(() => {
    for (const s of subscribers) s.write(": keep-alive\n\n");
  }, heartbeatMs);
  heartbeat.unref();

  await listenOn(server, listen);
  const port = (server.address() as AddressInfo).port;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host || "0.0.0.0";
  return {
    url: `http://${host}:${port}/`,
    port,
    publish(g) {
      const text = frame(g);
      for (const s of subscribers) s.write(text);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        clearInterval(heartbeat);
        for (const s of subscribers) s.end();
        subscribers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listenOn(server: Server, listen: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void =>
      reject(new Error(`cannot listen on ${listen.host || "*"}:${listen.port}: ${err.code ?? err.message}`));
    server.once("error", failed);
    server.listen({ host: listen.host || undefined, port: listen.port }, () => {
      server.off("error", failed);
      resolve();
    });
  });
}
