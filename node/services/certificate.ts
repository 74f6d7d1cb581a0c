import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { ConnectionOptions } from "node:tls";
import { program, run, TunnelError } from "./system";

/**
 * A service's TLS identity (the proxy's HTTP/2 server, the relay's TURN over TLS): key,
 * self-signed certificate and its SHA-256 fingerprint. No CA vouches for it: the provider names
 * the certificate and its fingerprint in its signed session answer, and the consumer pins that.
 */
export interface ServiceCertificate {
  key: string;
  certificate: string;
  fingerprint: string;
  /** Where they are kept (coturn reads the files itself). */
  keyFile: string;
  certificateFile: string;
}

/**
 * Makes (once, with openssl) or loads a service's EC P-256 key and self-signed certificate under
 * `dir`, as `<name>.key` (0600) and `<name>.crt`: one per node and service, kept across restarts so
 * the fingerprint a consumer saw stays the provider's. Its subject is `CN=<commonName>` (default
 * `myst-<name>`); a kept certificate with another subject is made anew (a relay's names its identity:
 * services/relay/tcp-held.ts `proveRelayAt`).
 */
export async function ensureCertificate(dir: string, name: string, o: { commonName?: string } = {}): Promise<ServiceCertificate> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, `${name}.key`);
  const certificateFile = path.join(dir, `${name}.crt`);
  const commonName = o.commonName ?? `myst-${name}`;
  const kept = fs.existsSync(keyFile) && fs.existsSync(certificateFile);
  if (!kept || new crypto.X509Certificate(fs.readFileSync(certificateFile)).subject !== `CN=${commonName}`) {
    const openssl = program("openssl");
    const tmpKey = `${keyFile}.new`;
    await run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", tmpKey]);
    fs.chmodSync(tmpKey, 0o600);
    await run([openssl, "req", "-new", "-x509", "-key", tmpKey, "-out", `${certificateFile}.new`, "-days", "3650", "-subj", `/CN=${commonName}`]);
    fs.renameSync(`${certificateFile}.new`, certificateFile);
    fs.renameSync(tmpKey, keyFile);
  }
  const certificate = fs.readFileSync(certificateFile, "utf8");
  return {
    key: fs.readFileSync(keyFile, "utf8"),
    certificate,
    fingerprint: new crypto.X509Certificate(certificate).fingerprint256,
    keyFile,
    certificateFile,
  };
}

/** A SHA-256 certificate fingerprint as node:crypto writes it (the form sent in session answers). */
export const FINGERPRINT_PATTERN = "^([0-9A-F]{2}:){31}[0-9A-F]{2}$";

/** Throws BAD_SERVICE_CONFIG unless `certificate` parses and is the one `fingerprint` names (`whose`: "the provider's proxy", …). */
export function checkPinnedCertificate(certificate: string, fingerprint: string, whose: string): void {
  let actual: string;
  try {
    actual = new crypto.X509Certificate(certificate).fingerprint256;
  } catch (err) {
    throw new TunnelError("BAD_SERVICE_CONFIG", `${whose} certificate does not parse`, { cause: err });
  }
  if (actual !== fingerprint) throw new TunnelError("BAD_SERVICE_CONFIG", `${whose} certificate does not match its fingerprint`);
}

/**
 * TLS client options that trust exactly one certificate: the one pinned by its fingerprint. The pin
 * is the whole check: the certificate names no host, and no CA vouches for it.
 */
export function pinnedTls(certificate: string, fingerprint: string, whose: string): Pick<ConnectionOptions, "ca" | "checkServerIdentity"> {
  return {
    ca: certificate,
    checkServerIdentity: (_host, cert) => (cert.fingerprint256 === fingerprint ? undefined : new Error(`${whose} certificate is not the one pinned`)),
  };
}
