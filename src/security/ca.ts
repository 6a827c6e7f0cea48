// A throw-away certificate authority for one SPIFFE trust domain, in process: the demo and the tests issue
// X.509-SVIDs from it without the openssl CLI or a SPIRE server. Keys are EC P-256 and never leave memory
// unless writeFiles() is asked to write them. Not for production: the CA key lives in this process only.
//
// What it makes follows the X.509-SVID standard:
// - root (and optional intermediate) CA: basicConstraints CA:true, keyUsage keyCertSign + cRLSign, the trust
//   domain's own ID `spiffe://<td>` as URI SAN;
// - leaves: CA:false, keyUsage digitalSignature, EKU serverAuth + clientAuth, exactly one URI SAN (the SPIFFE
//   ID), a random 127-bit serial, NotBefore one minute in the past so peers with a slow clock accept it.
//
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API installed
// before it loads: hence the side-effect import first (ES modules evaluate imports in order).
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkSpiffeId, type Identity, type IdentityFiles } from "./identity.js";

/** How far NotBefore lies in the past, for peers whose clocks lag. */
export const clockSkewMs = 60_000;

const ecdsa = { name: "ECDSA", namedCurve: "P-256" } as const;
const ecdsaSha256 = { name: "ECDSA", hash: "SHA-256" } as const;

export interface CaOptions {
  /** Validity of the CA certificates; default 24 hours. */
  ttlMs?: number;
  /**
   * Sign leaves with an intermediate CA below the root: leaves then carry the intermediate in their chain
   * (certChainPem, the Workload API's x509_svid) while the bundle holds only the root.
   */
  intermediate?: boolean;
}

export interface IssueOptions {
  /** The clock to issue at (tests of expired or not-yet-valid SVIDs); default now. */
  now?: Date;
  /**
   * Sign an ID of another trust domain (tests of trust-domain checks). A real SPIFFE CA never does this, so
   * it is refused unless asked for.
   */
  allowForeignTrustDomain?: boolean;
}

interface Signer {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

/** The trust domain of a SPIFFE ID: the part between `spiffe://` and the first slash. */
function trustDomainOf(spiffeId: string): string {
  return spiffeId.slice("spiffe://".length).split("/")[0] ?? "";
}

/** A positive serial of 16 random bytes (RFC 5280: at most 20 octets, non-negative). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  if (b[0] === 0) b[0] = 1; // no leading zero octet, so the DER integer keeps 16 bytes
  return b.toString("hex");
}

function toPem(cert: x509.X509Certificate): string {
  return new X509Certificate(Buffer.from(cert.rawData)).toString();
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return globalThis.crypto.subtle.generateKey(ecdsa, true, ["sign", "verify"]);
}

async function caExtensions(
  trustDomain: string,
  keys: CryptoKeyPair,
  pathLength: number | undefined,
  issuer: Signer | undefined,
): Promise<x509.Extension[]> {
  const exts: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${trustDomain}` }]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (issuer) exts.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey));
  return exts;
}

export class TrustDomainCa {
  /** PEM of the root CA certificate: the trust bundle of this trust domain. */
  readonly bundlePem: string;
  /** The same bundle in DER, as the Workload API carries it. */
  readonly bundleDer: Buffer;

  private constructor(
    readonly trustDomain: string,
    private readonly root: Signer,
    /** Signs the leaves: the root, or the intermediate below it. */
    private readonly issuer: Signer,
  ) {
    this.bundleDer = Buffer.from(root.cert.rawData);
    this.bundlePem = toPem(root.cert);
  }

  /** `spiffe://<trust domain>`: the key of this domain's bundle in Workload API bundle maps. */
  get trustDomainId(): string {
    return `spiffe://${this.trustDomain}`;
  }

  /**
   * A new CA for `trustDomain` (e.g. "nsm.test"). Every call makes new keys: a second CA of the same trust
   * domain is a different, untrusted authority (wrong-CA tests).
   */
  static async create(trustDomain: string, opts: CaOptions = {}): Promise<TrustDomainCa> {
    checkSpiffeId(`spiffe://${trustDomain}`, `trust domain "${trustDomain}" gives SPIFFE ID`);
    const ttlMs = opts.ttlMs ?? 24 * 3_600_000;
    const now = Date.now();
    const notBefore = new Date(now - clockSkewMs);
    const notAfter = new Date(now + ttlMs);

    const rootKeys = await generateKeys();
    const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: [`${trustDomain} root CA`] }, { O: ["nsm-ts test CA"] }],
      notBefore,
      notAfter,
      keys: rootKeys,
      signingAlgorithm: ecdsaSha256,
      extensions: await caExtensions(trustDomain, rootKeys, opts.intermediate ? 1 : undefined, undefined),
    });
    const root: Signer = { cert: rootCert, key: rootKeys.privateKey };
    if (!opts.intermediate) return new TrustDomainCa(trustDomain, root, root);

    const midKeys = await generateKeys();
    const midCert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: [`${trustDomain} intermediate CA`] }, { O: ["nsm-ts test CA"] }],
      issuer: rootCert.subject,
      notBefore,
      notAfter,
      publicKey: midKeys.publicKey,
      signingKey: root.key,
      signingAlgorithm: ecdsaSha256,
      extensions: await caExtensions(trustDomain, midKeys, 0, root),
    });
    return new TrustDomainCa(trustDomain, root, { cert: midCert, key: midKeys.privateKey });
  }

  /**
   * A fresh X.509-SVID for `spiffeId`, valid from one minute ago until `ttlMs` from now: a new key and a new
   * serial each time (so each call is what a rotation delivers).
   */
  async issue(spiffeId: string, ttlMs = 3_600_000, opts: IssueOptions = {}): Promise<Identity> {
    checkSpiffeId(spiffeId);
    if (!opts.allowForeignTrustDomain && trustDomainOf(spiffeId) !== this.trustDomain)
      throw new Error(
        `cannot issue ${spiffeId} from the CA of trust domain "${this.trustDomain}": a SPIFFE CA signs only ` +
          `its own trust domain's IDs (pass allowForeignTrustDomain for a test that wants such a certificate)`,
      );
    const now = (opts.now ?? new Date()).getTime();
    const keys = await generateKeys();
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      // The ID is in the SAN; the subject is for people reading logs (CN is at most 64 characters).
      subject: [{ CN: [spiffeId.slice(0, 64)] }, { O: ["nsm-ts workload"] }],
      issuer: this.issuer.cert.subject,
      notBefore: new Date(now - clockSkewMs),
      notAfter: new Date(now + ttlMs),
      publicKey: keys.publicKey,
      signingKey: this.issuer.key,
      signingAlgorithm: ecdsaSha256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffeId }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.issuer.cert.publicKey),
      ],
    });

    const pkcs8 = Buffer.from(await globalThis.crypto.subtle.exportKey("pkcs8", keys.privateKey));
    const privateKey = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
    const certificatePem = toPem(leaf);
    const chain = [certificatePem];
    if (this.issuer !== this.root) chain.push(toPem(this.issuer.cert));
    return {
      spiffeId,
      privateKey,
      publicKey: createPublicKey(privateKey),
      certificatePem,
      certChainPem: chain.join(""),
      keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      caPem: this.bundlePem,
      notAfter: leaf.notAfter,
    };
  }

  /**
   * Issues an SVID and writes it as `<base>-svid.pem` (leaf and intermediates), `<base>-key.pem` (PKCS#8,
   * mode 0600) and `<base>-bundle.pem` in `dir`, the three files `loadIdentity` and `--cert/--key/--ca` read.
   */
  async writeFiles(
    dir: string,
    base: string,
    spiffeId: string,
    ttlMs = 3_600_000,
  ): Promise<IdentityFiles & { identity: Identity }> {
    const identity = await this.issue(spiffeId, ttlMs);
    await mkdir(dir, { recursive: true });
    const files: IdentityFiles = {
      certFile: join(dir, `${base}-svid.pem`),
      keyFile: join(dir, `${base}-key.pem`),
      caFile: join(dir, `${base}-bundle.pem`),
    };
    await writeFile(files.certFile, identity.certChainPem ?? "");
    await writeFile(files.keyFile, identity.keyPem ?? "", { mode: 0o600 });
    await writeFile(files.caFile, identity.caPem ?? "");
    return { ...files, identity };
  }
}
