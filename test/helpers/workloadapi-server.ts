// Test support: a SPIFFE Workload API server on a unix socket, serving one workload identity issued by a
// TrustDomainCa — what spire-agent does, without SPIRE. It follows the standard where a client can notice:
// calls without `workload.spiffe.io: true` fail with INVALID_ARGUMENT, a workload without an identity gets
// PERMISSION_DENIED, each response is the complete current set, and rotate() pushes a new SVID (new key, new
// serial) to every open FetchX509SVID stream.
import { X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  SpiffeWorkloadAPIService,
  type X509BundlesRequest,
  type X509BundlesResponse,
  type X509SVIDRequest,
  type X509SVIDResponse,
} from "../../src/api/workload.js";
import { removeStaleSocket } from "../../src/core/grpc.js";
import type { TrustDomainCa } from "../../src/security/ca.js";
import { pemBlocks, type Identity } from "../../src/security/identity.js";
import { workloadMetadataKey } from "../../src/security/workloadapi.js";

export interface WorkloadApiServerOptions {
  /** Lifetime of each SVID; default 1 hour (rotate() is how tests rotate). */
  ttlMs?: number;
  /** Bundles of other trust domains sent as federated_bundles. */
  federatedWith?: TrustDomainCa[];
}

type X509Stream = grpc.ServerWritableStream<X509SVIDRequest, X509SVIDResponse>;

/** DER of every certificate in a PEM text, concatenated (the Workload API's encoding). */
function derOf(pem: string): Buffer {
  return Buffer.concat(pemBlocks(pem).map((b) => new X509Certificate(b).raw));
}

export class WorkloadApiServer {
  private server: grpc.Server | undefined;
  private socketPath: string | undefined;
  private readonly streams = new Set<X509Stream>();
  private identity: Identity | undefined;
  private denied = false;
  /** FetchX509SVID calls accepted so far (a reconnecting client makes a new one). */
  calls = 0;
  /** Calls refused for missing the security metadata. */
  refusedForMetadata = 0;

  constructor(
    private readonly ca: TrustDomainCa,
    /** The identity served to every caller; additional IDs follow it in the same response. */
    private readonly spiffeIds: string | string[],
    private readonly opts: WorkloadApiServerOptions = {},
  ) {}

  /** The SVID currently served (after start()). */
  get current(): Identity {
    if (!this.identity) throw new Error("WorkloadApiServer: start() first");
    return this.identity;
  }

  /** Streams open now. */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Issues the first SVID (if none yet) and listens on `socketPath`; returns the address `unix:///…`. */
  async start(socketPath: string): Promise<string> {
    if (this.server) throw new Error("WorkloadApiServer: already started");
    this.identity ??= await this.ca.issue(this.primaryId(), this.opts.ttlMs ?? 3_600_000);
    this.extra ??= await this.issueExtras();
    await removeStaleSocket(socketPath);
    const server = new grpc.Server();
    server.addService(SpiffeWorkloadAPIService, {
      fetchX509Svid: (call: X509Stream) => this.fetchX509Svid(call),
      fetchX509Bundles: (call: grpc.ServerWritableStream<X509BundlesRequest, X509BundlesResponse>) => {
        if (!this.admit(call)) return;
        call.write(this.bundlesResponse());
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    this.server = server;
    this.socketPath = socketPath;
    return `unix://${socketPath}`;
  }

  /** Issues a new SVID (new key and serial) and sends it on every open stream. */
  async rotate(ttlMs = this.opts.ttlMs ?? 3_600_000): Promise<Identity> {
    this.identity = await this.ca.issue(this.primaryId(), ttlMs);
    this.extra = await this.issueExtras();
    const res = this.x509Response();
    for (const s of this.streams) s.write(res);
    return this.identity;
  }

  /**
   * From now on the workload has no identity: open streams end with PERMISSION_DENIED, as do new calls,
   * until allowed again.
   */
  deny(denied = true): void {
    this.denied = denied;
    if (!denied) return;
    for (const s of this.streams) s.emit("error", this.permissionDenied());
    this.streams.clear();
  }

  /** Stops at once (open streams break with UNAVAILABLE, as when the agent dies); start() again to restart. */
  stop(): void {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.streams.clear();
    server.forceShutdown();
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }

  private extra: Identity[] | undefined;

  private primaryId(): string {
    return typeof this.spiffeIds === "string" ? this.spiffeIds : (this.spiffeIds[0] ?? "");
  }

  private async issueExtras(): Promise<Identity[]> {
    const ids = typeof this.spiffeIds === "string" ? [] : this.spiffeIds.slice(1);
    return Promise.all(ids.map((id) => this.ca.issue(id, this.opts.ttlMs ?? 3_600_000)));
  }

  private permissionDenied(): Partial<grpc.StatusObject> & Error {
    return Object.assign(new Error("no identity issued"), {
      code: grpc.status.PERMISSION_DENIED,
      details: "no identity issued",
    });
  }

  /** The security header check every method does first; false when the call was refused. */
  private admit(call: grpc.ServerWritableStream<unknown, unknown>): boolean {
    const values = call.metadata.get(workloadMetadataKey);
    if (values.length !== 1 || values[0] !== "true") {
      this.refusedForMetadata++;
      // grpc-js sends an 'error' emitted on a server stream as the call's status.
      call.emit(
        "error",
        Object.assign(new Error(`security header missing from request`), {
          code: grpc.status.INVALID_ARGUMENT,
          details: `security header missing from request: metadata "${workloadMetadataKey}: true" is required`,
        }),
      );
      return false;
    }
    if (this.denied) {
      call.emit("error", this.permissionDenied());
      return false;
    }
    return true;
  }

  private fetchX509Svid(call: X509Stream): void {
    if (!this.admit(call)) return;
    this.calls++;
    this.streams.add(call);
    const forget = (): void => void this.streams.delete(call);
    call.on("cancelled", forget);
    call.on("close", forget);
    call.write(this.x509Response());
  }

  private x509Response(): X509SVIDResponse {
    const all = [this.current, ...(this.extra ?? [])];
    const federatedBundles: Record<string, Buffer> = {};
    for (const f of this.opts.federatedWith ?? []) federatedBundles[f.trustDomainId] = f.bundleDer;
    return {
      svids: all.map((id) => ({
        spiffeId: id.spiffeId,
        x509Svid: derOf(id.certChainPem ?? ""),
        x509SvidKey: id.privateKey.export({ type: "pkcs8", format: "der" }),
        bundle: this.ca.bundleDer,
        hint: "",
      })),
      crl: [],
      federatedBundles,
    };
  }

  private bundlesResponse(): X509BundlesResponse {
    const bundles: Record<string, Buffer> = { [this.ca.trustDomainId]: this.ca.bundleDer };
    for (const f of this.opts.federatedWith ?? []) bundles[f.trustDomainId] = f.bundleDer;
    return { crl: [], bundles };
  }
}
