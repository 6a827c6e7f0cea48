// Tiny TCP check for tests, run inside a namespace: `server <ip> <port>` echoes the byte count of what it
// received (and prints `peer <address>` for each connection, so NAT is visible); `client <ip> <port> <bytes>`
// sends that many bytes and prints the count the server reports.
import { createConnection, createServer } from "node:net";

const [mode, host, port, bytes] = process.argv.slice(2);
if (mode === "server") {
  const srv = createServer((s) => {
    console.log(`peer ${s.remoteAddress}`);
    let n = 0;
    s.on("data", (d) => (n += d.length));
    s.on("end", () => s.end(String(n)));
  });
  srv.listen(Number(port), host, () => console.log("listening"));
  setTimeout(() => process.exit(0), 30_000).unref();
} else {
  const s = createConnection({ host, port: Number(port) }, () => {
    s.end(Buffer.alloc(Number(bytes), 7));
  });
  let reply = "";
  s.on("data", (d) => (reply += d));
  s.on("end", () => {
    console.log(reply);
    process.exit(0);
  });
  s.on("error", (e) => {
    console.error(e.message);
    process.exit(1);
  });
  setTimeout(() => process.exit(2), 10_000).unref();
}
