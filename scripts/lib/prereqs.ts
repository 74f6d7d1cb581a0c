import { execFileSync } from "node:child_process";
import fs from "node:fs";

/** What the e2e tests need and this machine lacks; empty when all is there. */
export function missingE2EPrerequisites(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (the e2e tests make network namespaces and tunnels)");
  for (const [bin, pkg] of [
    ["openvpn", "openvpn"],
    ["nats-server", "nats-server"],
    ["iptables", "iptables"],
    ["ip", "iproute2"],
    ["openssl", "openssl"],
    ["nft", "nftables"],
    ["dnsmasq", "dnsmasq-base"],
    ["wireguard-go", "wireguard-go"],
    ["python3", "python3"],
  ]) {
    if (!["/usr/sbin", "/usr/bin", "/sbin"].some((d) => fs.existsSync(`${d}/${bin}`))) missing.push(`${bin} (apt-get install ${pkg})`);
  }
  if (!fs.existsSync("/dev/net/tun")) missing.push("/dev/net/tun");
  if (missing.length === 0) {
    try {
      execFileSync("/usr/sbin/ip", ["netns", "list"], { stdio: "ignore" });
    } catch {
      missing.push("network namespaces (ip netns)");
    }
  }
  return missing;
}

/**
 * Call in a `before`: skips the suite with the reason when prerequisites are missing — except in
 * CI (CI=true), where a missing prerequisite is a failure, never a silent skip.
 */
export function requireE2E(ctx: Mocha.Context): void {
  requirePrerequisites(ctx, "e2e", missingE2EPrerequisites());
}

/** `requireE2E` for any list of what a suite lacks: a skip with the reason, a failure in CI. */
export function requirePrerequisites(ctx: Mocha.Context, what: string, missing: string[]): void {
  if (missing.length === 0) return;
  const reason = `${what} prerequisites missing: ${missing.join(", ")}`;
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: failing, not skipping)`);
  console.log(`      (skipped: ${reason})`);
  ctx.skip();
}
