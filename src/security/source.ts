// Where a component's X.509-SVID comes from, and how it rotates: a source holds the current Identity and
// tells listeners when a new one arrives. It is also a grpc-js CertificateProvider, so TLS credentials built
// from it use the new certificate for new handshakes while established connections carry on (rotation
// without dropping live connections). Sources: files (re-read when they change), the SPIFFE Workload API
// (src/security/workloadapi.ts), or a fixed identity (tests, insecure mode).
import { watch, type FSWatcher } from "node:fs";
import type { experimental } from "@grpc/grpc-js";
import { hasCertificate, loadIdentity, type Identity, type IdentityFiles } from "./identity.js";

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

export type RotationListener = (identity: Identity) => void;

export interface IdentitySource extends CertificateProvider {
  /** The current identity; throws before the first one arrived (see `ready`). */
  current(): Identity;
  /** Resolves with the first identity (a Workload API source waits for its first SVID). */
  ready(): Promise<Identity>;
  /** Called with every new identity after the first. */
  onRotate(listener: RotationListener): () => void;
  close(): void;
}

/**
 * The shared part of every source: keeps the current identity, feeds grpc-js listeners and our own.
 * Subclasses call `update()`.
 */
export class BaseIdentitySource implements IdentitySource {
  private identity: Identity | undefined;
  private readonly waiters: ((i: Identity) => void)[] = [];
  private readonly rotation = new Set<RotationListener>();
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();

  protected update(identity: Identity): void {
    const first = this.identity === undefined;
    this.identity = identity;
    if (hasCertificate(identity)) {
      const ca = { caCertificate: Buffer.from(identity.caPem) };
      const id = {
        certificate: Buffer.from(identity.certChainPem),
        privateKey: Buffer.from(identity.keyPem),
      };
      for (const l of this.caListeners) l(ca);
      for (const l of this.idListeners) l(id);
    }
    if (first) for (const w of this.waiters.splice(0)) w(identity);
    else for (const l of this.rotation) l(identity);
  }

  current(): Identity {
    if (!this.identity) throw new Error("no X.509-SVID received yet");
    return this.identity;
  }

  ready(): Promise<Identity> {
    if (this.identity) return Promise.resolve(this.identity);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  onRotate(listener: RotationListener): () => void {
    this.rotation.add(listener);
    return () => this.rotation.delete(listener);
  }

  // grpc-js registers its own watchers only after adding a listener, so the current certificate is handed
  // over on the next tick, as grpc-js's own file watcher provider does; a synchronous call would be lost.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      const i = this.identity;
      if (this.caListeners.has(listener) && hasCertificate(i))
        listener({ caCertificate: Buffer.from(i.caPem) });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.add(listener);
    queueMicrotask(() => {
      const i = this.identity;
      if (this.idListeners.has(listener) && hasCertificate(i))
        listener({ certificate: Buffer.from(i.certChainPem), privateKey: Buffer.from(i.keyPem) });
    });
  }

  removeIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.delete(listener);
  }

  close(): void {
    this.rotation.clear();
    this.caListeners.clear();
    this.idListeners.clear();
  }
}

/** A fixed identity: a generated one (insecure mode) or one loaded once (tests). */
export class StaticIdentitySource extends BaseIdentitySource {
  constructor(identity: Identity) {
    super();
    this.update(identity);
  }
}

/**
 * An SVID from PEM files, re-read when any of them changes (as a spiffe-helper or cert-manager csi driver
 * rewrites them). A half-written set fails to load and is retried at the next change or tick; the last good
 * identity stays in use meanwhile.
 */
export class FileIdentitySource extends BaseIdentitySource {
  private readonly watchers: FSWatcher[] = [];
  private readonly timer: NodeJS.Timeout;
  private lastError: string | undefined;

  constructor(
    private readonly files: IdentityFiles,
    private readonly onError: (err: Error) => void = () => undefined,
    pollMs = 5_000,
  ) {
    super();
    this.update(loadIdentity(files)); // the first load must succeed: it throws naming the file
    const reload = (): void => this.reload();
    for (const f of [files.certFile, files.keyFile, files.caFile]) {
      try {
        this.watchers.push(watch(f, { persistent: false }, reload));
      } catch {
        /* the poll below still notices */
      }
    }
    // fs.watch misses atomic renames of some writers: poll too, cheaply (only a changed leaf is applied).
    this.timer = setInterval(reload, pollMs).unref();
  }

  private reload(): void {
    let next: Identity;
    try {
      next = loadIdentity(this.files);
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.onError(e as Error);
      this.lastError = msg;
      return;
    }
    this.lastError = undefined;
    const cur = this.current();
    if (next.certChainPem === cur.certChainPem && next.caPem === cur.caPem && next.keyPem === cur.keyPem)
      return;
    this.update(next);
  }

  override close(): void {
    clearInterval(this.timer);
    for (const w of this.watchers) w.close();
    super.close();
  }
}
