// The /metrics HTTP endpoint Prometheus scrapes: the registry in the text exposition format. Nothing else is
// served; stop() also ends idle keep-alive connections, so a stopping component is not held open by a scraper.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { Logger } from "../../core/log.js";
import type { ListenAddress } from "./address.js";

export interface RunningMetricsServer {
  /** http://host:port/metrics as bound (a port 0 resolved). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startMetricsServer(
  listen: ListenAddress,
  registry: Registry,
  log?: Logger,
): Promise<RunningMetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("only /metrics is served here\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        log?.warn({ err }, "collecting metrics failed");
        res
          .writeHead(500, { "content-type": "text/plain" })
          .end(`collecting metrics failed: ${String(err)}\n`);
      },
    );
  });
  await listenOn(server, listen);
  const port = (server.address() as AddressInfo).port;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host || "0.0.0.0";
  const url = `http://${host}:${port}/metrics`;
  log?.info({ urls: [url] }, "metrics serving");
  return {
    url,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listenOn(server: Server, listen: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void =>
      reject(
        new Error(
          `metrics server: cannot listen on ${listen.host || "*"}:${listen.port}: ${err.code ?? err.message}`,
        ),
      );
    server.once("error", failed);
    server.listen({ host: listen.host || undefined, port: listen.port }, () => {
      server.off("error", failed);
      resolve();
    });
  });
}
