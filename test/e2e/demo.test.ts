import { expect } from "chai";
import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { requireE2E } from "../support/prereqs";
import { buildCli } from "../support/cli";

const ROOT = path.resolve(__dirname, "..", "..");

for (const service of ["openvpn", "wireguard"] as const)
  describe(`e2e: the local demo (npm run demo -- --service ${service}), checked step by step`, function () {
    this.timeout(300_000);
    let output = "";
    let code: number | null = null;

    before(async function () {
      requireE2E(this);
      buildCli();
      const child = spawn(
        process.execPath,
        [require.resolve("ts-node/dist/bin.js", { paths: [ROOT] }), "--transpile-only", "scripts/demo.ts", "--service", service],
        {
          cwd: ROOT,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
      code = await new Promise((resolve) => child.on("exit", resolve));
    });

    it("finishes with exit code 0", function () {
      expect(code, output).to.equal(0);
      expect(output).to.match(/\ndemo complete\n/);
    });

    it("registers both identities on the local chain", function () {
      expect(output).to.match(/✓ provider 0x[0-9a-fA-F]{40} registered \(tx 0x[0-9a-f]{64}\)/);
      expect(output).to.match(/✓ consumer 0x[0-9a-fA-F]{40} registered \(tx 0x[0-9a-f]{64}\)/);
    });

    it("finds the provider through discovery with filters", function () {
      expect(output).to.match(
        new RegExp(`✓ the consumer finds it with filters \\(${service}, DE, ≤ 0\\.2 MYST/GiB\\): 0x[0-9a-fA-F]{40}, Berlin, residential`),
      );
    });

    it("shows the consumer's own IP before, the provider's IP (behind its NAT gateway) after, and the LAN blocked", function () {
      expect(output).to.match(/✓ visible IP 198\.18\.1\.2 — the consumer's own address/);
      expect(output).to.include("✓ visible IP 198.18.3.2 — the provider's address (198.18.3.2), not the consumer's (198.18.1.2)");
      expect(output).to.include("is blocked");
    });

    it("moves 8 MiB through the tunnel and meters it on the consumer", function () {
      expect(output).to.match(/✓ 8388608 bytes downloaded from the internet host/);
      const meter = /consumer's meter: (\d+) bytes in/.exec(output);
      expect(Number(meter?.[1])).to.be.greaterThan(8 * 1024 * 1024);
    });

    it("deposits into the channel, pays invoices with promises, and settles on chain", function () {
      expect(output).to.match(/✓ deposited 5 MYST into the channel \(tx 0x[0-9a-f]{64}, gas \d+\)/);
      const promised = /✓ (\d+) invoice\(s\) answered; ([0-9.]+) MYST promised/.exec(output);
      expect(Number(promised?.[1])).to.be.greaterThanOrEqual(2);
      expect(Number(promised?.[2])).to.be.greaterThan(0);
      const settled = /✓ settled ([0-9.]+) MYST of ([0-9.]+) promised \(tx 0x[0-9a-f]{64}\)/.exec(output);
      expect(Number(settled?.[1])).to.be.greaterThan(0);
      expect(settled?.[1]).to.equal(settled?.[2]);
      const channel = /the consumer's channel now holds ([0-9.]+) MYST; spent ([0-9.]+) MYST/.exec(output);
      expect(channel?.[2]).to.equal(settled?.[1]);
      expect(Number(channel?.[1]) + Number(channel?.[2])).to.be.closeTo(5, 1e-9);
    });

    it("disconnects back to the consumer's own route and leaves no namespace behind", function () {
      expect(output).to.include("✓ visible IP 198.18.1.2: the consumer's own route is back");
      expect(output).to.include("✓ processes stopped, namespaces removed");
      expect(execFileSync("/usr/sbin/ip", ["netns", "list"], { encoding: "utf8" })).to.not.include("myst-demo-");
    });
  });
