// Where the /metrics server listens: `host:port` or `tcp://host:port` (the form the other --*-listen-on flags
// take); `[v6]:port`; an empty host (":9090") is every interface; port 0 picks a free one.
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses a --metrics-listen-on value; the error names `flag` and the forms it takes. */
export function parseListenAddress(text: string, flag: string): ListenAddress {
  const bad = (why: string): Error =>
    new Error(`${flag}: "${text}" ${why}; give host:port or tcp://host:port, e.g. 127.0.0.1:9090 or :9090`);
  const rest = text.trim().replace(/^tcp:\/\//, "");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) throw bad("is not a TCP address");
  const m = /^(\[[^\]]*\]|[^:[\]/]*):(\d+)$/.exec(rest);
  if (!m) throw bad("is not host:port");
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port > 65535) throw bad("has no valid port");
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}
