import { expect } from "chai";
import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { requireE2E } from "../../scripts/lib/prereqs";
import { buildCli } from "../support/cli";

const ROOT = path.resolve(__dirname, "..", "..");

/**
 * The demo once per tunnel type, as README's Quick start runs it. Each run is a whole demo (about a
 * minute): the two cannot share their set-up, the demo being one process that makes and removes its
 * chain, broker and namespaces (tag "demo") itself.
 */
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
        { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
      );
      child.stdout.on("data", (d) => (output += d));
      child.stderr.on("data", (d) => (output += d));
      code = await new Promise((resolve) => child.on("exit", resolve));
    });

    it("finishes with exit code 0", function () {
      expect(code, output).to.equal(0);
      expect(output).to.match(/\ndemo complete\n/);
    });

    it("registers two providers and a consumer, provider B through a relayer", function () {
      expect(output).to.match(/✓ provider A 0x[0-9a-fA-F]{40} registered \(tx 0x[0-9a-f]{64}\)\n/);
      expect(output).to.match(/✓ provider B 0x[0-9a-fA-F]{40} registered \(tx 0x[0-9a-f]{64}\) through the relayer/);
      expect(output).to.match(/✓ consumer 0x[0-9a-fA-F]{40} registered \(tx 0x[0-9a-f]{64}\)/);
    });

    it("finds both providers through discovery with filters", function () {
      expect(output).to.match(
        new RegExp(`✓ the consumer finds it with filters \\(${service}, DE, ≤ 0\\.2 MYST/GiB\\): 0x[0-9a-fA-F]{40}, Berlin, residential`),
      );
      expect(output).to.match(
        new RegExp(`✓ the consumer finds it with filters \\(${service}, DE, ≤ 0\\.2 MYST/GiB\\): 0x[0-9a-fA-F]{40}, Hamburg, residential`),
      );
    });

    it("runs the consumer's node on the consumer's machine, reaching chain, broker and discovery over the routers", function () {
      expect(output).to.match(
        /✓ its node runs in myst-demo-c1: chain, broker and discovery over the routers \(nats:\/\/198\.18\.9\.2:\d+\), not on 127\.0\.0\.1/,
      );
    });

    // WireGuard: A behind a router that keeps one port per app (its WAN 198.18.3.2), B behind a UPnP router (11.5.0.2);
    // OpenVPN, which cannot punch: both behind UPnP routers (A's WAN 11.3.0.2).
    const addressA = service === "wireguard" ? "198.18.3.2" : "11.3.0.2";

    it("shows the consumer's own IP before, each provider's IP (behind its home router) in its session, and the LAN blocked", function () {
      expect(output).to.match(/✓ visible IP 198\.18\.1\.2 — the consumer's own address/);
      expect(output).to.include(`✓ visible IP ${addressA} — provider A's address (${addressA}), not the consumer's (198.18.1.2)`);
      expect(output).to.include("✓ visible IP 11.5.0.2 — provider B's address (11.5.0.2), not the consumer's (198.18.1.2)");
      expect(output).to.include("is blocked");
    });

    it("puts both providers behind home routers that forward no port, their proposals naming only public contacts", function () {
      const homeA = service === "wireguard" ? "a home router that keeps one port per app" : "a UPnP home router";
      expect(output).to.include(`✓ provider A's machine 192.168.88.2 sits behind ${homeA} (public address ${addressA})`);
      expect(output).to.include("✓ provider B's machine 192.168.89.2 sits behind a UPnP home router (public address 11.5.0.2)");
      const contacts = [...output.matchAll(/how to reach it \(its proposal, measured by its node\): ([^—]+) — no private address/g)].map((m) => m[1]);
      expect(contacts).to.have.length(2);
      for (const c of contacts) expect(c).to.not.match(/192\.168\.|100\.6[4-9]\./);
      expect(contacts.join(" ")).to.match(/mapped 11\.5\.0\.2:\d+/);
    });

    it("says how each provider was reached: A by hole punching (WireGuard) or its mapped port (OpenVPN), B on its mapped port", function () {
      expect(output).to.match(
        new RegExp(
          `✓ reached provider A ${service === "wireguard" ? "by hole punching through both routers; the session's messages go over the direct channel between the two nodes" : "on the port its router maps for it \\(UPnP\\); the session's messages go over the (direct channel|broker)"}`,
        ),
      );
      // B needs no punch: the tunnel goes at once, and the channel comes up beside it (the broker until then).
      expect(output).to.match(/✓ reached provider B on the port its router maps for it \(UPnP\); the session's messages go over the (direct channel|broker)/);
    });

    it("makes one deposit, then starts the session with a provider never used before with no transaction", function () {
      expect(output).to.match(/✓ deposited 5\.0+ MYST \+ 1\.0+ MYST of escrow \(tx 0x[0-9a-f]{64}, gas \d+\)/);
      expect(output).to.match(/✓ session [0-9a-f]{32} with provider B: 0 transaction\(s\) by the consumer to start it/);
      expect(output).to.match(/✓ session [0-9a-f]{32} with provider A: 0 transaction\(s\) by the consumer to start it/);
    });

    it("moves 8 MiB through each tunnel, meters it and pays invoices with promises", function () {
      const meters = [...output.matchAll(/consumer's meter: (\d+) bytes in, \d+ bytes out; (\d+) invoice\(s\) answered; ([0-9.]+) MYST promised/g)];
      // WireGuard: a third session, relayed (below).
      expect(meters).to.have.length(service === "wireguard" ? 3 : 2);
      for (const m of meters) {
        expect(Number(m[1])).to.be.greaterThan(8 * 1024 * 1024);
        expect(Number(m[2])).to.be.greaterThanOrEqual(2);
        expect(Number(m[3])).to.be.greaterThan(0);
      }
    });

    it("pays both providers on chain from the one vault, provider B through a relayer while holding no ETH", function () {
      const a = /✓ provider A settled ([0-9.]+) MYST of ([0-9.]+) promised \(tx 0x[0-9a-f]{64}\)/.exec(output);
      expect(Number(a?.[1])).to.be.greaterThan(0);
      expect(a?.[1]).to.equal(a?.[2]);
      const b = /✓ provider B settled ([0-9.]+) MYST through the relayer \(tx 0x[0-9a-f]{64}\); fee ([0-9.]+) MYST, net ([0-9.]+) MYST/.exec(output);
      expect(Number(b?.[1])).to.be.greaterThan(0);
      expect(Number(b?.[2])).to.be.greaterThan(0);
      expect(Number(b?.[2]) + Number(b?.[3])).to.be.closeTo(Number(b?.[1]), 1e-9);
      expect(output).to.match(/✓ provider B holds 0\.0 ETH and ([0-9.]+) MYST: paid without ever paying gas/);
      const vault = /the consumer's one vault now holds ([0-9.]+) MYST \(escrow 1\.0+ MYST\) after paying both providers/.exec(output);
      expect(Number(vault?.[1]) + Number(a?.[1]) + Number(b?.[1])).to.be.closeTo(5, 1e-8); // three 9-decimal roundings
    });

    if (service === "wireguard")
      it("joins a consumer and a provider behind symmetric routers through the relay node, showing the path, both histories and what the relay earned", function () {
        const relay = /✓ relay (0x[0-9a-fA-F]{40}) registered/.exec(output)?.[1];
        expect(relay, output).to.be.a("string");
        expect(output).to.include(
          "✓ provider C's machine 192.168.90.2 sits behind a home router that gives each destination a new port (symmetric; public address 198.18.5.2)",
        );
        expect(output).to.include("✓ a relay node on 198.18.20.2 (its own public address) sells relaying on port 443");
        expect(output).to.match(/✓ session [0-9a-f]{32} with provider C: 0 transaction\(s\) by the second consumer to start it/);
        expect(output).to.match(/✓ reached provider C through a relay; the session's messages go over the broker \(path relayed \/ broker\)/);
        expect(output).to.match(
          new RegExp(`✓   relayed via ${relay} over UDP/443: the relay \\(the relay node above\\) sees only WireGuard's ciphertext`, "i"),
        );
        expect(output).to.include("✓ visible IP 198.18.5.2 — provider C's address (198.18.5.2), not the consumer's (198.18.1.3)");
        const meter = /its meter of the relay: (\d+) bytes both ways; ([0-9.]+) MYST promised to the relay/.exec(output);
        expect(Number(meter?.[1])).to.be.greaterThan(8 * 1024 * 1024);
        expect(Number(meter?.[2])).to.be.greaterThan(0);
        // The path in both histories: the consumer's first-hand (with the relay's port), the provider's from the consumer's word.
        expect(output).to.match(new RegExp(`✓ consumer 2's history: session [0-9a-f]{32} with provider C — relayed via ${relay} over UDP/443\n`, "i"));
        expect(output).to.match(new RegExp(`✓   and beside it the relay session [0-9a-f]{32} with ${relay}, paid from the same vault`, "i"));
        expect(output).to.match(new RegExp(`✓ provider C's history: session [0-9a-f]{32} — relayed via ${relay} over UDP `, "i"));
        const earned =
          /✓ the relay earned ([0-9.]+) MYST for relayed session [0-9a-f]{32} \((\d+) bytes of WireGuard ciphertext, for consumer (0x[0-9a-fA-F]{40}), path public\)/.exec(
            output,
          );
        expect(Number(earned?.[1]), output).to.be.greaterThan(0);
        // Billed from coturn's counters, which it brings up to date about every 4,096 packets (so
        // not all of it: docs/relay.md, "The counters lag"), and which count TURN's own messages and
        // what crossed after the consumer's meter above was read: within what the consumer accepts
        // to pay for by its meter (its invoice tolerance, 25%).
        expect(Number(earned?.[2])).to.be.greaterThan(0);
        expect(Number(earned?.[2])).to.be.at.most(Number(meter?.[1]) * 1.25);
        expect(earned?.[3]?.toLowerCase()).to.equal(/✓ consumer 2 (0x[0-9a-fA-F]{40}) registered/.exec(output)?.[1].toLowerCase());
        expect(output).to.match(new RegExp(`✓ provider C earned [0-9.]*[1-9][0-9.]* MYST for the same session — relayed via ${relay} over UDP\n`, "i"));
      });

    it("disconnects back to the consumer's own route and leaves no namespace behind", function () {
      expect(output).to.include("✓ visible IP 198.18.1.2: the consumer's own route is back");
      expect(output).to.include("✓ processes stopped, namespaces removed");
      expect(execFileSync("/usr/sbin/ip", ["netns", "list"], { encoding: "utf8" })).to.not.include("myst-demo-");
    });
  });

describe("e2e: a failing demo says which component failed and shows its last lines", function () {
  this.timeout(120_000);
  let output = "";
  let code: number | null = null;

  before(async function () {
    requireE2E(this);
    buildCli();
    // A setting every myst process refuses at start: the first one started, discovery, exits with it.
    const child = spawn(process.execPath, [require.resolve("ts-node/dist/bin.js", { paths: [ROOT] }), "--transpile-only", "scripts/demo.ts"], {
      cwd: ROOT,
      env: { ...process.env, MYST_OUTAGE_TOLERANCE_MS: "not a number" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    code = await new Promise((resolve) => child.on("exit", resolve));
  });

  it("fails at once naming the component, then prints that component's own words, and cleans up", function () {
    expect(code, output).to.equal(1);
    expect(output).to.match(/\ndemo failed: discovery exited \(1\)\n/);
    expect(output).to.match(/\n--- discovery \(exited 1\), its last \d+ line\(s\) ---\n.*MYST_OUTAGE_TOLERANCE_MS/);
    expect(execFileSync("/usr/sbin/ip", ["netns", "list"], { encoding: "utf8" })).to.not.include("myst-demo-");
  });
});
