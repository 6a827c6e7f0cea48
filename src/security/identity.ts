// Workload identities (spec §5): a SPIFFE ID plus the EC P-256 key that signs this hop's tokens. With
// certificates (an X.509-SVID: leaf with one `URI:spiffe://…` SAN, its key, and the trust bundle) the same key
// and certificate also carry mTLS; without them a fresh key pair is generated and links are insecure.
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { readFileSync } from "node:fs";

export const defaultTrustDomain = "nsm-ts.local";

export interface Identity {
  /** `spiffe://<trust-domain>/<path>`: the `sub` of every token this hop signs. */
  spiffeId: string;
  /** EC P-256 private key: signs tokens (ES256) and, with a certificate, the TLS handshake. */
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** PEM of the leaf certificate (the X.509-SVID); absent for a generated identity. */
  certificatePem?: string;
  /** PEM of the leaf followed by its intermediates, as sent in the TLS handshake. */
  certChainPem?: string;
  /** PEM of the private key, as given (TLS needs it in PEM form). */
  keyPem?: string;
  /** PEM of the trust bundle: the CA certificates that peer certificates must chain to. */
  caPem?: string;
  /** The leaf certificate's NotAfter: tokens never outlive it. */
  notAfter?: Date;
}

/** True when the identity carries a certificate (mTLS, tokens verified against peer certificates). */
export function hasCertificate(identity: Identity | undefined): identity is Identity & {
  certificatePem: string;
  certChainPem: string;
  keyPem: string;
  caPem: string;
} {
  return (
    identity !== undefined &&
    identity.certificatePem !== undefined &&
    identity.certChainPem !== undefined &&
    identity.keyPem !== undefined &&
    identity.caPem !== undefined
  );
}

// SPIFFE ID syntax (spiffe-id.md): lower-case trust domain of [a-z0-9._-], path segments of [A-Za-z0-9._-],
// no empty, "." or ".." segments, no trailing slash, no query or fragment.
const trustDomainRe = /^[a-z0-9._-]+$/;
const pathSegmentRe = /^[A-Za-z0-9._-]+$/;

/** Throws an Error naming what is wrong unless `id` is a valid SPIFFE ID. */
export function checkSpiffeId(id: string, what = "SPIFFE ID"): void {
  const prefix = "spiffe://";
  if (!id.startsWith(prefix)) throw new Error(`${what} "${id}" must start with ${prefix}`);
  const rest = id.slice(prefix.length);
  const slash = rest.indexOf("/");
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!trustDomainRe.test(td))
    throw new Error(`${what} "${id}": trust domain "${td}" must be non-empty lower-case [a-z0-9._-]`);
  if (slash < 0) return;
  for (const seg of rest.slice(slash + 1).split("/")) {
    if (!pathSegmentRe.test(seg) || seg === "." || seg === "..")
      throw new Error(
        `${what} "${id}": path segment "${seg}" must be non-empty [A-Za-z0-9._-], not "." or ".."`,
      );
  }
}

/**
 * A fresh P-256 key pair named `spiffe://<trustDomain>/<name>`, for running without certificates (insecure
 * transport). `name` may contain slashes (e.g. `ns/default/pod/nsc-1`).
 */
export function generatedIdentity(name: string, trustDomain = defaultTrustDomain): Identity {
  const spiffeId = `spiffe://${trustDomain}/${name}`;
  checkSpiffeId(spiffeId, `identity name "${name}" gives SPIFFE ID`);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { spiffeId, privateKey, publicKey };
}

const pemBlockRe = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Every PEM block of the given type in `text`, in order. */
export function pemBlocks(text: string, type = "CERTIFICATE"): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(pemBlockRe)) if (m[1] === type) out.push(`${m[0]}\n`);
  return out;
}

/** Parses Node's `subjectAltName` ("DNS:a, URI:spiffe://…", values with separators are JSON-quoted). */
function uriSans(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  const out: string[] = [];
  // Entries are "TYPE:value" joined by ", "; a value containing ", " or quotes is JSON-quoted.
  const entryRe = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const m of san.matchAll(entryRe)) {
    if (m[1] !== "URI") continue;
    const raw = m[2] ?? "";
    out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return out;
}

function toCertificate(pemOrDer: string | Buffer | X509Certificate): X509Certificate {
  return pemOrDer instanceof X509Certificate ? pemOrDer : new X509Certificate(pemOrDer);
}

/**
 * The SPIFFE ID of an X.509-SVID: its one `URI:spiffe://…` SAN. Throws when there is none, more than one, or
 * it is malformed (as go-spiffe's x509svid.IDFromCert does).
 */
export function spiffeIdFromCertificate(pemOrDer: string | Buffer | X509Certificate): string {
  const cert = toCertificate(pemOrDer);
  const ids = uriSans(cert).filter((u) => u.toLowerCase().startsWith("spiffe://"));
  if (ids.length === 0)
    throw new Error(
      `certificate "${cert.subject.replace(/\n/g, ", ")}" has no URI SAN with a spiffe:// ID ` +
        `(an X.509-SVID carries its ID as subjectAltName=URI:spiffe://<trust-domain>/<path>)`,
    );
  if (ids.length > 1)
    throw new Error(`certificate has ${ids.length} spiffe:// URI SANs (${ids.join(", ")}); want one`);
  const id = ids[0] as string;
  checkSpiffeId(id, "certificate URI SAN");
  return id;
}

/** The SPIFFE ID or undefined, for certificates that may not be SVIDs. */
export function trySpiffeIdFromCertificate(pemOrDer: string | Buffer | X509Certificate): string | undefined {
  try {
    return spiffeIdFromCertificate(pemOrDer);
  } catch {
    return undefined;
  }
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve ? `${key.asymmetricKeyType ?? "?"} ${curve}` : (key.asymmetricKeyType ?? key.type);
}

export interface IdentityFiles {
  /** PEM: the leaf X.509-SVID first, then any intermediates. */
  certFile: string;
  /** PEM: the leaf's private key (PKCS#8 or SEC1 "EC PRIVATE KEY"), EC P-256. */
  keyFile: string;
  /** PEM: the trust bundle (one or more CA certificates). */
  caFile: string;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`${what} ${file}: cannot read it: ${(e as Error).message}`);
  }
}

function parseCertificates(text: string, file: string, what: string): X509Certificate[] {
  const blocks = pemBlocks(text);
  if (blocks.length === 0) throw new Error(`${what} ${file}: no PEM "CERTIFICATE" block found`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new Error(`${what} ${file}: certificate #${i + 1} is not valid X.509: ${(e as Error).message}`);
    }
  });
}

/** The issuer of `cert` among `candidates` (name match and a valid signature), if any. */
function issuerOf(cert: X509Certificate, candidates: X509Certificate[]): X509Certificate | undefined {
  return candidates.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
}

/**
 * Loads an X.509-SVID from PEM files (as written by spire-agent or cert-manager's csi-driver-spiffe). Every
 * error names the file and what is wrong with it.
 */
export function loadIdentity(files: IdentityFiles, now = new Date()): Identity {
  const { certFile, keyFile, caFile } = files;
  const certText = readText(certFile, "certificate file");
  const chain = parseCertificates(certText, certFile, "certificate file");
  const leaf = chain[0] as X509Certificate;
  let spiffeId: string;
  try {
    spiffeId = spiffeIdFromCertificate(leaf);
  } catch (e) {
    throw new Error(`certificate file ${certFile}: ${(e as Error).message}`);
  }
  if (!isP256(leaf.publicKey))
    throw new Error(
      `certificate file ${certFile}: leaf key is ${describeKey(leaf.publicKey)}; NSM tokens are ES256, so the ` +
        `SVID key must be EC P-256 (prime256v1)`,
    );
  const notAfter = new Date(leaf.validTo);
  const notBefore = new Date(leaf.validFrom);
  if (Number.isNaN(notAfter.getTime()))
    throw new Error(`certificate file ${certFile}: cannot parse NotAfter "${leaf.validTo}"`);
  if (notAfter.getTime() <= now.getTime())
    throw new Error(`certificate file ${certFile}: the certificate expired at ${notAfter.toISOString()}`);
  if (notBefore.getTime() > now.getTime() + 60_000)
    throw new Error(
      `certificate file ${certFile}: the certificate is not valid before ${notBefore.toISOString()}`,
    );

  const keyPem = readText(keyFile, "key file");
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (e) {
    throw new Error(`key file ${keyFile}: not a PEM private key: ${(e as Error).message}`);
  }
  if (!isP256(privateKey))
    throw new Error(`key file ${keyFile}: key is ${describeKey(privateKey)}; want EC P-256 (prime256v1)`);
  if (!leaf.checkPrivateKey(privateKey))
    throw new Error(`key file ${keyFile}: the key does not match the certificate in ${certFile}`);

  const caPem = readText(caFile, "CA file");
  const cas = parseCertificates(caPem, caFile, "CA file");
  // Walk leaf → intermediates (from the cert file) → a CA of the bundle.
  let current = leaf;
  for (let hops = 0; ; hops++) {
    if (issuerOf(current, cas)) break;
    const next = issuerOf(current, chain.slice(1));
    if (!next || hops > chain.length)
      throw new Error(
        `certificate file ${certFile}: "${current.subject.replace(/\n/g, ", ")}" is not signed by any CA in ` +
          `${caFile} (nor by an intermediate in ${certFile}); peers would reject it`,
      );
    current = next;
  }

  return {
    spiffeId,
    privateKey,
    publicKey: createPublicKey(privateKey),
    certificatePem: leaf.toString(),
    certChainPem: pemBlocks(certText).join(""),
    keyPem,
    caPem,
    notAfter,
  };
}
