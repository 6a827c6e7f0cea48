// The webhook's HTTPS server: POST /mutate (upstream's path) answers AdmissionReviews with review(); GET
// /ready (upstream's probe path), /readyz and /healthz answer 200. The serving certificate is re-read when
// its files change, so a rotated Secret takes effect for new connections without a restart.
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../core/log.js";
import { pollFiles, type FilePoller } from "./certs.js";
import type { InjectConfig } from "./config.js";
import { review, ReviewDecodeError, type ReviewResult } from "./review.js";

export const mutatePath = "/mutate";
const probePaths = ["/ready", "/readyz", "/healthz"];
// The apiserver caps request bodies at 3 MiB; a review carries the object, plus some envelope.
const maxBodyBytes = 4 * 1024 * 1024;

export interface WebhookServerOptions {
  /** `[tcp://][host]:port`; no host = every address. */
  listenOn: string;
  certFile: string;
  keyFile: string;
  inject: InjectConfig;
  log: Logger;
  /** How often the certificate files are re-read; default 5 s (kubelet updates Secrets within ~1 min). */
  reloadIntervalMs?: number;
}

export interface WebhookServer {
  port: number;
  close(): Promise<void>;
}

export function parseListenOn(text: string): { host: string | undefined; port: number } {
  const m = /^(?:tcp:\/\/)?(\[[^\]]*\]|[^:/]*):(\d+)$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port > 65535)
    throw new Error(`--listen-on: "${text}" is not [tcp://][host]:port`);
  const host = m[1]!.replace(/^\[|\]$/g, "");
  return { host: host === "" ? undefined : host, port };
}

export async function startWebhookServer(o: WebhookServerOptions): Promise<WebhookServer> {
  const { host, port } = parseListenOn(o.listenOn);
  const read = (file: string, flag: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${flag} ${file}: ${(e as Error).message}`);
    }
  };
  const cert = read(o.certFile, "--cert-file");
  const key = read(o.keyFile, "--key-file");
  let server: Server;
  try {
    server = createServer({ cert, key, minVersion: "TLSv1.2" }, (req, res) => handle(o, req, res));
  } catch (e) {
    throw new Error(
      `--cert-file ${o.certFile} and --key-file ${o.keyFile} do not make a TLS key pair: ${(e as Error).message}`,
    );
  }

  const poller = pollFiles(
    [o.certFile, o.keyFile],
    o.reloadIntervalMs ?? 5_000,
    ([c, k]) => {
      try {
        server.setSecureContext({ cert: c!, key: k!, minVersion: "TLSv1.2" });
        o.log.info({ certFile: o.certFile }, "serving certificate reloaded");
      } catch (err) {
        // Usually one file of the pair is rewritten and the other not yet: the next change completes it.
        o.log.warn(
          { err, certFile: o.certFile, keyFile: o.keyFile },
          "certificate files do not load; keeping the old",
        );
      }
    },
    [cert, key],
  );

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => o.log.error({ err }, "webhook server error"));
  const bound = (server.address() as AddressInfo).port;
  o.log.info({ listenOn: o.listenOn, port: bound, path: mutatePath }, "admission webhook serving");
  return { port: bound, close: () => close(server, poller) };
}

function close(server: Server, poller: FilePoller): Promise<void> {
  poller.stop();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function handle(o: WebhookServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "").split("?")[0];
  if (req.method === "GET" && probePaths.includes(path ?? "")) return reply(res, 200, "text/plain", "ok\n");
  if (path !== mutatePath)
    return reply(res, 404, "text/plain", `no such path; POST AdmissionReviews to ${mutatePath}\n`);
  if (req.method !== "POST") return reply(res, 405, "text/plain", `${mutatePath} takes POST\n`);

  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size > maxBodyBytes) {
      reply(res, 413, "text/plain", `AdmissionReview larger than ${maxBodyBytes} bytes\n`);
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on("error", () => undefined); // a client that went away: nothing to answer
  req.on("end", () => {
    if (res.headersSent) return;
    let result: ReviewResult;
    try {
      result = review(JSON.parse(Buffer.concat(chunks).toString("utf8")), o.inject);
    } catch (err) {
      const bad = err instanceof SyntaxError || err instanceof ReviewDecodeError;
      const message = bad ? `cannot decode the AdmissionReview: ${err.message}` : "internal error";
      o.log[bad ? "warn" : "error"]({ err, remote: req.socket.remoteAddress }, message);
      return reply(res, bad ? 400 : 500, "application/json", JSON.stringify({ error: message }));
    }
    logOutcome(o.log, result, o.inject);
    reply(res, 200, "application/json", JSON.stringify(result.review));
  });
}

function logOutcome(log: Logger, r: ReviewResult, inject: InjectConfig): void {
  const who = { namespace: r.namespace, pod: r.pod, uid: r.review.response.uid };
  switch (r.outcome.kind) {
    case "injected":
      return log.info(
        {
          ...who,
          container: inject.containerName,
          image: inject.image,
          services: r.outcome.services,
          volumes: r.outcome.volumes,
        },
        "NSC injected",
      );
    case "rejected":
      return log.warn({ ...who, reason: r.outcome.reason }, "pod rejected");
    case "skipped":
      return log.debug({ ...who, reason: r.outcome.reason }, "pod admitted unchanged");
  }
}

function reply(res: ServerResponse, code: number, type: string, body: string): void {
  if (res.headersSent) return;
  res.writeHead(code, { "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
