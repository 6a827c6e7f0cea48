// The webhook's certificate files: noticing when they change (a rotated Secret), and checking that the CA
// bundle handed to the apiserver really signed the serving certificate.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

export interface FilePoller {
  stop(): void;
}

/**
 * Calls `onChange` with the files' contents whenever any of them differs from the last read (unreadable
 * files are skipped until readable). Polling, not fs.watch: a Secret volume swaps a `..data` symlink, which
 * an inotify watch on the old target never reports. A half-written set is reported too; the writer's next
 * change reports the finished one, so `onChange` may simply reject what does not load.
 */
export function pollFiles(
  paths: string[],
  intervalMs: number,
  onChange: (contents: Buffer[]) => void,
  initial: Buffer[] = paths.map((p) => readFileSync(p)),
): FilePoller {
  let last = initial;
  const timer = setInterval(() => {
    let now: Buffer[];
    try {
      now = paths.map((p) => readFileSync(p));
    } catch {
      return; // mid-swap: a file is briefly missing
    }
    if (now.every((b, i) => b.equals(last[i]!))) return;
    last = now;
    onChange(now);
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

const pemBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Throws unless a certificate of `caPem` signed the first certificate of `certPem`. */
export function checkSignedBy(certPem: string, caPem: string, certFile: string, caFile: string): void {
  const leafPem = certPem.match(pemBlock)?.[0];
  if (!leafPem) throw new Error(`${certFile}: no PEM certificate`);
  const leaf = new X509Certificate(leafPem);
  const cas = (caPem.match(pemBlock) ?? []).map((p) => new X509Certificate(p));
  if (cas.length === 0) throw new Error(`${caFile}: no PEM certificate`);
  if (!cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)))
    throw new Error(
      `${caFile} did not sign ${certFile} (issuer "${leaf.issuer}"): the apiserver would refuse the webhook's ` +
        `certificate; give the CA that signed it (scripts/k8s/webhook-tls.sh writes both)`,
    );
}
