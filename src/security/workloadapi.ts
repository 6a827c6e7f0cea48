// A client of the SPIFFE Workload API (the socket spire-agent serves; spec: SPIFFE_Workload_API.md and
// SPIFFE_Workload_Endpoint.md): a component's X.509-SVID, its key and the trust bundles arrive on one
// FetchX509SVID server stream, and every later message on that stream is a rotation. The source keeps the
// stream open, reconnects with backoff when it breaks (the last identity stays in use meanwhile), and feeds
// rotations to grpc-js TLS credentials through BaseIdentitySource, so new handshakes use the new SVID.
//
// Transport: gRPC without TLS over a unix socket (or tcp://<ip>:<port>), as the standard prescribes: the
// agent authenticates the caller by the socket's peer credentials, not by TLS. Every call carries the
// metadata `workload.spiffe.io: true`, which servers require (an SSRF guard).
//
// Errors: UNAVAILABLE, PERMISSION_DENIED (no entry for this process yet) and a broken stream are reported
// through `onError` and retried with backoff (100 ms doubling to 5 s); INVALID_ARGUMENT and UNIMPLEMENTED are
// final, as the standard says (see onFatal). A PERMISSION_DENIED after an SVID was delivered (its entry was
// deleted) leaves that SVID in use until it expires: the standard says clients SHOULD stop using it, and a
// caller that must can close the source on such an error.
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { SpiffeWorkloadAPIService, type X509SVID, type X509SVIDResponse } from "../api/workload.js";
import { GrpcClient } from "../core/client.js";
import { checkSpiffeId, spiffeIdFromCertificate, type Identity } from "./identity.js";
import { BaseIdentitySource } from "./source.js";

/** The environment variable that names the Workload API endpoint (SPIFFE_Workload_Endpoint.md §4). */
export const endpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET";
/** The metadata every Workload API call must carry, with the value "true". */
export const workloadMetadataKey = "workload.spiffe.io";

/** Metadata for a Workload API call. */
export function workloadMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(workloadMetadataKey, "true");
  return md;
}

/**
 * The dial URL for a Workload API address, as the standard allows it: `unix:///abs/path` or `unix:/abs/path`
 * (no authority, no query or fragment), or `tcp://<ip>:<port>` (an IP address, not a host name, and no path).
 * Returns `unix:///abs/path` or `tcp://<ip>:<port>`. Throws naming what is wrong.
 */
export function workloadApiUrl(addr: string): string {
  const bad = (why: string): Error =>
    new Error(
      `SPIFFE Workload API address "${addr}": ${why} (want unix:///path/to/socket or tcp://<ip>:<port>)`,
    );
  let u: URL;
  try {
    u = new URL(addr);
  } catch {
    throw bad("not a URI");
  }
  if (u.search || u.hash || u.username || u.password) throw bad("no query, fragment or user info allowed");
  if (u.protocol === "unix:") {
    if (u.host !== "") throw bad(`a unix address has no authority ("${u.host}")`);
    if (!u.pathname.startsWith("/") || u.pathname === "/") throw bad("the socket path must be absolute");
    return `unix://${decodeURIComponent(u.pathname)}`;
  }
  if (u.protocol === "tcp:") {
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (isIP(host) === 0) throw bad(`the host must be an IP address, not "${u.hostname}"`);
    if (u.port === "") throw bad("the port is missing");
    if (u.pathname !== "" && u.pathname !== "/") throw bad("a tcp address has no path");
    return `tcp://${u.hostname}:${u.port}`;
  }
  throw bad(`unknown scheme "${u.protocol.replace(/:$/, "")}"`);
}

/** Splits concatenated DER values (certificates) into one buffer each. */
export function splitDer(der: Uint8Array, what: string): Buffer[] {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    if (buf[at] !== 0x30) throw new Error(`${what}: byte ${at} is not the start of a DER SEQUENCE`);
    const first = buf[at + 1];
    if (first === undefined) throw new Error(`${what}: truncated at byte ${at}`);
    let header = 2;
    let length = first;
    if (first & 0x80) {
      const n = first & 0x7f;
      if (n === 0 || n > 4) throw new Error(`${what}: unsupported DER length at byte ${at}`);
      length = 0;
      for (let i = 0; i < n; i++) {
        const b = buf[at + 2 + i];
        if (b === undefined) throw new Error(`${what}: truncated at byte ${at}`);
        length = length * 256 + b;
      }
      header += n;
    }
    const end = at + header + length;
    if (end > buf.length) throw new Error(`${what}: a DER value at byte ${at} runs past the end`);
    out.push(buf.subarray(at, end));
    at = end;
  }
  return out;
}

function certificates(der: Uint8Array, what: string): X509Certificate[] {
  const parts = splitDer(der, what);
  if (parts.length === 0) throw new Error(`${what} is empty`);
  return parts.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (e) {
      throw new Error(`${what}: certificate #${i + 1} is not valid X.509: ${(e as Error).message}`);
    }
  });
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

/** The identity an X509SVID message carries, checked: ID matches the leaf, P-256, key matches, chain ok. */
export function identityFromX509Svid(
  svid: X509SVID,
  federatedBundles: ReadonlyMap<string, string>,
): Identity {
  const what = `Workload API SVID "${svid.spiffeId}"`;
  checkSpiffeId(svid.spiffeId, `${what}: spiffe_id`);
  const chain = certificates(svid.x509Svid, `${what}: x509_svid`);
  const leaf = chain[0] as X509Certificate;
  const inCert = spiffeIdFromCertificate(leaf);
  if (inCert !== svid.spiffeId) throw new Error(`${what}: the leaf certificate names ${inCert} instead`);
  if (leaf.ca)
    throw new Error(`${what}: the leaf certificate is a CA certificate; an X.509-SVID must not be`);
  if (!isP256(leaf.publicKey))
    throw new Error(
      `${what}: the leaf key is not EC P-256; NSM tokens are ES256 (configure the SPIRE CA key type)`,
    );
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(svid.x509SvidKey), format: "der", type: "pkcs8" });
  } catch (e) {
    throw new Error(`${what}: x509_svid_key is not a DER PKCS#8 private key: ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey))
    throw new Error(`${what}: x509_svid_key does not match the certificate`);
  const bundle = certificates(svid.bundle, `${what}: bundle`);
  // Leaf → intermediates → a CA of the bundle, as peers will check it.
  const signedBy = (c: X509Certificate, by: X509Certificate[]): X509Certificate | undefined =>
    by.find((b) => c.checkIssued(b) && c.verify(b.publicKey));
  let current = leaf;
  for (let hops = 0; !signedBy(current, bundle); hops++) {
    const next = signedBy(current, chain.slice(1));
    if (!next || hops > chain.length)
      throw new Error(`${what}: the certificate chain does not lead to a CA of the trust bundle`);
    current = next;
  }
  const ownPem = bundle.map((c) => c.toString()).join("");
  return {
    spiffeId: svid.spiffeId,
    privateKey,
    publicKey: createPublicKey(privateKey),
    certificatePem: leaf.toString(),
    certChainPem: chain.map((c) => c.toString()).join(""),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    // Peers of federated trust domains are trusted too: their CAs join ours in the one bundle TLS checks.
    caPem: ownPem + [...federatedBundles.values()].join(""),
    notAfter: new Date(leaf.validTo),
  };
}

/**
 * Federated bundles of a response as PEM, keyed by trust domain ID (`spiffe://td`). Keys are trust domain IDs
 * by the standard; a bare trust domain name ("td") is accepted too, as go-spiffe does.
 */
function federatedPems(res: X509SVIDResponse, ownTrustDomainId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, der] of Object.entries(res.federatedBundles).sort(([a], [b]) => a.localeCompare(b))) {
    const td = key.startsWith("spiffe://") ? key : `spiffe://${key}`;
    if (td === ownTrustDomainId) continue; // already the SVID's own bundle
    checkSpiffeId(td, "Workload API federated bundle key");
    if (td.slice("spiffe://".length).includes("/"))
      throw new Error(`Workload API federated bundle key "${key}" is not a trust domain ID (spiffe://<td>)`);
    const pems = certificates(der, `Workload API federated bundle of ${td}`).map((c) => c.toString());
    out.set(td, pems.join(""));
  }
  return out;
}

export interface WorkloadApiOptions {
  /** Stream errors, refused calls and bad responses (the source keeps retrying; log them). */
  onError?: (err: Error) => void;
  /**
   * Which of the workload's identities to use when the agent returns several (e.g. several registration
   * entries match the same process). Default: the first, which the standard makes the default one.
   */
  spiffeId?: string;
  /** First reconnect delay; doubles on each failure up to `maxBackoffMs`. Default 100 ms. */
  initialBackoffMs?: number;
  /** Default 5 s. */
  maxBackoffMs?: number;
}

/** gRPC codes after which the standard says not to retry: the client or the server is wrong, not busy. */
const fatalCodes = new Set<number>([grpc.status.INVALID_ARGUMENT, grpc.status.UNIMPLEMENTED]);

function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === "number" ? code : undefined;
}

/**
 * An IdentitySource fed by the SPIFFE Workload API. It starts streaming at construction; `ready()` resolves
 * with the first SVID (see identityFromWorkloadApi for a bounded wait).
 */
export class WorkloadApiSource extends BaseIdentitySource {
  /** The dial URL: unix:///path or tcp://ip:port. */
  readonly url: string;
  private readonly client: GrpcClient;
  private readonly abort = new AbortController();
  private readonly onError: (err: Error) => void;
  private bundles: ReadonlyMap<string, string> = new Map();
  private fatalError: Error | undefined;
  private readonly fatalListeners = new Set<(err: Error) => void>();
  private lastErrorMessage: string | undefined;
  /** Settles when the stream loop has stopped (after close() or a fatal error). */
  readonly done: Promise<void>;

  constructor(
    /** The Workload API address; default: $SPIFFE_ENDPOINT_SOCKET. */
    readonly addr: string = process.env[endpointSocketEnv] ?? "",
    private readonly opts: WorkloadApiOptions = {},
  ) {
    super();
    if (addr === "")
      throw new Error(
        `no SPIFFE Workload API address: pass one (e.g. unix:///run/spire/agent.sock) or set ${endpointSocketEnv}`,
      );
    this.url = workloadApiUrl(addr);
    this.onError = (err) => {
      this.lastErrorMessage = err.message;
      opts.onError?.(err);
    };
    // No keepalive pings: spire-agent (grpc-go defaults) tolerates one ping per 5 minutes and answers our
    // default 30 s with GOAWAY "too many pings" after ~2 minutes, breaking the stream. The socket is local: a
    // dead agent closes it, which ends the stream at once anyway.
    this.client = new GrpcClient(this.url, { "grpc.keepalive_time_ms": -1 });
    this.done = this.run();
  }

  /** CA bundles of other trust domains (PEM, keyed by `spiffe://td`); also part of `current().caPem`. */
  get federatedBundles(): ReadonlyMap<string, string> {
    return this.bundles;
  }

  /** The last error seen (stream failure, refusal, bad response), for messages about a missing SVID. */
  get lastError(): string | undefined {
    return this.lastErrorMessage;
  }

  /** Called once if the source gives up (INVALID_ARGUMENT or UNIMPLEMENTED: retrying cannot help). */
  onFatal(listener: (err: Error) => void): () => void {
    if (this.fatalError) listener(this.fatalError);
    else this.fatalListeners.add(listener);
    return () => void this.fatalListeners.delete(listener);
  }

  private async run(): Promise<void> {
    const initial = this.opts.initialBackoffMs ?? 100;
    const max = this.opts.maxBackoffMs ?? 5_000;
    let backoff = initial;
    // The same failure again and again (the agent is down for a while) is reported once, until a success.
    let repeated: string | undefined;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let why: Error;
      try {
        const stream = this.client.serverStream(
          SpiffeWorkloadAPIService.fetchX509Svid,
          {},
          { metadata: workloadMetadata(), signal },
        );
        for await (const res of stream) {
          if (!this.apply(res)) continue;
          backoff = initial;
          repeated = undefined;
        }
        why = new Error(`the Workload API at ${this.addr} ended the X.509-SVID stream`);
      } catch (e) {
        if (signal.aborted) break;
        const code = grpcCode(e);
        why = new Error(
          `the Workload API at ${this.addr} failed the X.509-SVID stream: ${(e as Error).message}` +
            (code === grpc.status.PERMISSION_DENIED
              ? " (no registration entry matches this process yet, or the agent is not attested)"
              : ""),
        );
        if (code !== undefined && fatalCodes.has(code)) {
          this.fail(why);
          return;
        }
      }
      if (signal.aborted) break;
      if (why.message === repeated) this.lastErrorMessage = why.message;
      else this.onError(why);
      repeated = why.message;
      try {
        await sleep(backoff, undefined, { signal });
      } catch {
        break; // closed while waiting
      }
      backoff = Math.min(backoff * 2, max);
    }
  }

  /** Applies one response; returns whether it carried a usable identity. */
  private apply(res: X509SVIDResponse): boolean {
    try {
      const want = this.opts.spiffeId;
      const svid = want === undefined ? res.svids[0] : res.svids.find((s) => s.spiffeId === want);
      if (!svid) {
        const ids = res.svids.map((s) => s.spiffeId).join(", ");
        throw new Error(
          want === undefined
            ? `the Workload API at ${this.addr} sent a response without X.509-SVIDs`
            : `the Workload API at ${this.addr} offers ${ids || "no X.509-SVIDs"}, not ${want}`,
        );
      }
      const tdId = `spiffe://${svid.spiffeId.slice("spiffe://".length).split("/")[0] ?? ""}`;
      const bundles = federatedPems(res, tdId);
      const next = identityFromX509Svid(svid, bundles);
      this.bundles = bundles;
      const cur = this.tryCurrent();
      // A reconnect re-sends the SVID in use: that is not a rotation.
      const same = cur?.certChainPem === next.certChainPem && cur?.keyPem === next.keyPem;
      if (same && cur?.caPem === next.caPem) return true;
      this.update(next);
      return true;
    } catch (e) {
      this.onError(e as Error);
      return false;
    }
  }

  private tryCurrent(): Identity | undefined {
    try {
      return this.current();
    } catch {
      return undefined;
    }
  }

  private fail(err: Error): void {
    this.fatalError = err;
    this.onError(err);
    for (const l of this.fatalListeners) l(err);
    this.fatalListeners.clear();
  }

  /** Cancels the stream, stops reconnecting and closes the channel. */
  override close(): void {
    this.abort.abort();
    this.client.close();
    this.fatalListeners.clear();
    super.close();
  }
}

export interface IdentityFromWorkloadApiOptions extends WorkloadApiOptions {
  /** How long to wait for the first SVID; default 30 s. */
  timeoutMs?: number;
}

/**
 * A WorkloadApiSource that has its first SVID. Rejects (and closes the source) after `timeoutMs` without
 * one, or at once when the server refuses the client for good, naming the socket and the last error.
 */
export async function identityFromWorkloadApi(
  addr: string | undefined,
  opts: IdentityFromWorkloadApiOptions = {},
): Promise<WorkloadApiSource> {
  const source = new WorkloadApiSource(addr ?? process.env[endpointSocketEnv] ?? "", opts);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const abort = new AbortController();
  let unsubscribe = (): void => undefined;
  try {
    await Promise.race([
      source.ready(),
      new Promise<never>((_resolve, reject) => {
        unsubscribe = source.onFatal(reject);
      }),
      sleep(timeoutMs, undefined, { signal: abort.signal }).then(() => {
        throw new Error(
          `no X.509-SVID from the SPIFFE Workload API at ${source.addr} within ${timeoutMs} ms` +
            (source.lastError ? ` (last error: ${source.lastError})` : "") +
            `: is the agent running there, and is a registration entry for this workload in place?`,
        );
      }),
    ]);
  } catch (e) {
    source.close();
    throw e;
  } finally {
    abort.abort();
    unsubscribe();
  }
  return source;
}
