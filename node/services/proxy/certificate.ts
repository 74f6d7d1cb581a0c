import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { program, run } from "../system";

/** The proxy server's TLS identity: key, self-signed certificate and its SHA-256 fingerprint. */
export interface ProxyCertificate {
  key: string;
  certificate: string;
  fingerprint: string;
}

/**
 * Makes (once, with openssl) or loads the proxy server's EC P-256 key and self-signed certificate
 * under `dir` (key 0600). Consumers do not check it against any CA: they pin the fingerprint the
 * provider sends in the signed session answer.
 */
export async function ensureCertificate(dir: string): Promise<ProxyCertificate> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, "proxy.key");
  const certFile = path.join(dir, "proxy.crt");
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    const openssl = program("openssl");
    const tmpKey = `${keyFile}.new`;
    await run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", tmpKey]);
    fs.chmodSync(tmpKey, 0o600);
    await run([openssl, "req", "-new", "-x509", "-key", tmpKey, "-out", `${certFile}.new`, "-days", "3650", "-subj", "/CN=myst-proxy"]);
    fs.renameSync(`${certFile}.new`, certFile);
    fs.renameSync(tmpKey, keyFile);
  }
  const certificate = fs.readFileSync(certFile, "utf8");
  return { key: fs.readFileSync(keyFile, "utf8"), certificate, fingerprint: new crypto.X509Certificate(certificate).fingerprint256 };
}
