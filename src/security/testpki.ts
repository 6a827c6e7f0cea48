// Test support (not used at run time): a throw-away PKI made with the `openssl` CLI in a temp directory — CAs,
// intermediates and X.509-SVID leaves with SPIFFE URI SANs, EC P-256 unless asked otherwise.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CaFiles {
  name: string;
  certFile: string;
  keyFile: string;
  /** The root's certificate file: the trust bundle for everything under this CA. */
  rootFile: string;
  /** Certificate files to append to a leaf's chain (intermediates only). */
  chainFiles: string[];
}

export interface LeafFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface LeafOptions {
  /** URI SAN; null for none. Default `spiffe://example.org/ns/default/pod/<name>`. */
  uri?: string | null;
  /** Default "p256". */
  keyType?: "p256" | "p384" | "rsa";
  /** Leave out the intermediates from the certificate file. */
  noChain?: boolean;
}

function keyArgs(keyType: LeafOptions["keyType"]): string[] {
  switch (keyType) {
    case "rsa":
      return ["-newkey", "rsa:2048"];
    case "p384":
      return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
    default:
      return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
  }
}

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), "nsm-ts-pki-"));
  private serial = 1;

  private openssl(args: string[]): void {
    try {
      execFileSync("openssl", args, { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
      if (err.code === "ENOENT")
        throw new Error("the openssl CLI is needed by the security tests: apt-get install -y openssl");
      throw new Error(`openssl ${args.join(" ")} failed: ${err.stderr?.toString() ?? err.message}`);
    }
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  private sign(csr: string, out: string, issuer: CaFiles, ext: string): void {
    const extFile = this.file(`${out}.ext`);
    writeFileSync(extFile, ext);
    this.openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      issuer.certFile,
      "-CAkey",
      issuer.keyFile,
      "-set_serial",
      String(this.serial++),
      "-days",
      "2",
      "-sha256",
      "-extfile",
      extFile,
      "-out",
      this.file(out),
    ]);
  }

  /** A self-signed root CA for `trustDomain`. */
  ca(name: string, trustDomain = "example.org"): CaFiles {
    this.openssl([
      "req",
      "-x509",
      ...keyArgs("p256"),
      "-nodes",
      "-keyout",
      this.file(`${name}.key`),
      "-out",
      this.file(`${name}.pem`),
      "-days",
      "2",
      "-subj",
      `/O=nsm-ts test/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-addext",
      `subjectAltName=URI:spiffe://${trustDomain}`,
    ]);
    const certFile = this.file(`${name}.pem`);
    return { name, certFile, keyFile: this.file(`${name}.key`), rootFile: certFile, chainFiles: [] };
  }

  /** An intermediate CA signed by `issuer`. */
  intermediate(issuer: CaFiles, name: string): CaFiles {
    this.openssl([
      "req",
      "-new",
      ...keyArgs("p256"),
      "-nodes",
      "-keyout",
      this.file(`${name}.key`),
      "-out",
      this.file(`${name}.csr`),
      "-subj",
      `/O=nsm-ts test/CN=${name}`,
    ]);
    this.sign(
      `${name}.csr`,
      `${name}.pem`,
      issuer,
      "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    const certFile = this.file(`${name}.pem`);
    return {
      name,
      certFile,
      keyFile: this.file(`${name}.key`),
      rootFile: issuer.rootFile,
      chainFiles: [certFile, ...issuer.chainFiles],
    };
  }

  /** A leaf SVID signed by `issuer`; the certificate file holds the leaf then the intermediates. */
  leaf(issuer: CaFiles, name: string, opts: LeafOptions = {}): LeafFiles {
    const uri = opts.uri === undefined ? `spiffe://example.org/ns/default/pod/${name}` : opts.uri;
    this.openssl([
      "req",
      "-new",
      ...keyArgs(opts.keyType),
      "-nodes",
      "-keyout",
      this.file(`${name}.key`),
      "-out",
      this.file(`${name}.csr`),
      "-subj",
      `/O=nsm-ts test/CN=${name}`,
    ]);
    let ext =
      "basicConstraints=critical,CA:FALSE\n" +
      `keyUsage=critical,digitalSignature${opts.keyType === "rsa" ? ",keyEncipherment" : ",keyAgreement"}\n` +
      "extendedKeyUsage=serverAuth,clientAuth\n";
    if (uri !== null) ext += `subjectAltName=URI:${uri}\n`;
    this.sign(`${name}.csr`, `${name}-leaf.pem`, issuer, ext);
    const leafPem = this.file(`${name}-leaf.pem`);
    const certFile = this.file(`${name}.pem`);
    const parts = [leafPem, ...(opts.noChain ? [] : issuer.chainFiles)];
    writeFileSync(certFile, parts.map((f) => readFileSync(f, "utf8")).join(""));
    return { certFile, keyFile: this.file(`${name}.key`), caFile: issuer.rootFile };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
