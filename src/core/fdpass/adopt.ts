// Taking a connected unix socket away from libuv: Node's net.Socket reads with read(2), which would drop
// the descriptors a peer sends, so the FdSocket gets its own copy of the descriptor and the net.Socket goes.
import type { Socket } from "node:net";
import { fdpass } from "./native.js";
import { FdSocket } from "./socket.js";

interface PipeHandle {
  fd?: number;
  readStop?: () => number;
}

/** The FdSocket for a connected unix socket; `sock` is destroyed (its bytes already read are kept). */
export function adoptUnixSocket(sock: Socket): FdSocket {
  const handle = (sock as unknown as { _handle?: PipeHandle })._handle;
  const fd = handle?.fd;
  if (fd === undefined || fd < 0) throw new Error("fdpass: the socket has no descriptor to adopt");
  handle?.readStop?.();
  // A client socket starts reading as soon as it connects: bytes it already took are handed over.
  const early: Buffer[] = [];
  for (let c = sock.read() as Buffer | null; c !== null; c = sock.read() as Buffer | null) early.push(c);
  const copy = fdpass().dup(fd);
  if (copy < 0) throw new Error(`fdpass: cannot copy the socket descriptor (errno ${-copy})`);
  sock.destroy();
  const fds = new FdSocket(copy);
  if (early.length > 0) fds.unshift(Buffer.concat(early));
  return fds;
}
