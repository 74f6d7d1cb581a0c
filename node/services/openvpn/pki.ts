import fs from "node:fs";
import path from "node:path";
import { program, run } from "../system";

/** A service's PKI: its own CA, the server's key and certificate, and the tls-crypt key. */
export interface ServicePki {
  ca: string;
  cert: string;
  key: string;
  tlsCrypt: string;
  dir: string;
}

/**
 * Creates (once) or loads the PKI of an OpenVPN service under `dir`: an EC P-256 CA and server
 * certificate made with openssl (about 0.1 s), and a tls-crypt key made by openvpn. Keys are 0600.
 * Consumers authenticate with their session signature, not certificates (verify-client-cert none).
 */
export async function ensurePki(dir: string): Promise<ServicePki> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => path.join(dir, name);
  if (![f("ca.crt"), f("server.crt"), f("server.key"), f("tls-crypt.key")].every((p) => fs.existsSync(p))) {
    const openssl = program("openssl");
    const days = "3650";
    await run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
    await run([openssl, "req", "-new", "-x509", "-key", f("ca.key"), "-out", f("ca.crt"), "-days", days, "-subj", "/CN=myst service CA"]);
    await run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("server.key")]);
    await run([openssl, "req", "-new", "-key", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=myst-server"]);
    const ext = f("server.ext");
    fs.writeFileSync(ext, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
    await run([
      openssl,
      "x509",
      "-req",
      "-in",
      f("server.csr"),
      "-CA",
      f("ca.crt"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f("server.crt"),
      "-days",
      days,
      "-extfile",
      ext,
    ]);
    await run([program("openvpn"), "--genkey", "secret", f("tls-crypt.key")]);
    for (const name of ["ca.key", "server.key", "tls-crypt.key"]) fs.chmodSync(f(name), 0o600);
    for (const name of ["server.csr", "server.ext", "ca.srl"]) fs.rmSync(f(name), { force: true });
  }
  return {
    dir,
    ca: fs.readFileSync(f("ca.crt"), "utf8"),
    cert: f("server.crt"),
    key: f("server.key"),
    tlsCrypt: fs.readFileSync(f("tls-crypt.key"), "utf8"),
  };
}
