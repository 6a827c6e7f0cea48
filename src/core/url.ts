// NSM endpoint URLs: tcp://host:port and unix:///path (upstream also carries inode://dev/ino for passed fds).
import { invalidArgument } from "./errors.js";

export type Endpoint = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** Parses a listen/dial URL. `field` names the flag or message field for the error text. */
export function parseEndpoint(url: string, field = "url"): Endpoint {
  if (url.startsWith("unix://")) {
    const path = url.slice("unix://".length);
    if (!path.startsWith("/")) throw invalidArgument(field, `"${url}" must be unix:///absolute/path`);
    return { kind: "unix", path };
  }
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]*):(\d{1,5})$/.exec(url);
  if (m) {
    const port = Number(m[2]);
    if (port > 65535) throw invalidArgument(field, `"${url}" has port ${port} > 65535`);
    const host = m[1] === "" ? "0.0.0.0" : m[1]!.replace(/^\[|\]$/g, "");
    return { kind: "tcp", host, port };
  }
  throw invalidArgument(field, `"${url}" is not tcp://host:port or unix:///path`);
}

/** The target string grpc-js dials for an endpoint. */
export function grpcTarget(ep: Endpoint): string {
  if (ep.kind === "unix") return `unix://${ep.path}`;
  const host = ep.host === "0.0.0.0" ? "127.0.0.1" : ep.host === "::" ? "::1" : ep.host;
  return host.includes(":") ? `[${host}]:${ep.port}` : `${host}:${ep.port}`;
}

export function formatEndpoint(ep: Endpoint): string {
  if (ep.kind === "unix") return `unix://${ep.path}`;
  return ep.host.includes(":") ? `tcp://[${ep.host}]:${ep.port}` : `tcp://${ep.host}:${ep.port}`;
}

/** Checks a URL a client registers (NSE url): absent is allowed, present must be a known scheme and parse. */
export function validateRegisteredUrl(url: string, field: string): void {
  if (url === "") return;
  if (url.startsWith("inode://")) {
    if (!/^inode:\/\/\d+\/\d+$/.test(url))
      throw invalidArgument(field, `"${url}" is not inode://<dev>/<ino>`);
    return;
  }
  parseEndpoint(url, field);
}
