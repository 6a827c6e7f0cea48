// The demo's web server and HTTP client, run inside namespaces (`nsm demo web-server|http-get`): the
// internet's server on 203.0.113.10 and a pod's server behind its floating IP.
import http from "node:http";

export function serveHello(host: string, port: number, name: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello from ${name} (you are ${req.socket.remoteAddress ?? "?"})\n`);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      console.error(JSON.stringify({ msg: "web server ready", urls: [`http://${host}:${port}`] }));
      resolve(server);
    });
  });
}

/** GET `url`; resolves with the body of a 200, rejects otherwise (5 s timeout). */
export function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error("timed out after 5 s")));
    req.on("error", reject);
  });
}
