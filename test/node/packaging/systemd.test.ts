import { expect } from "chai";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { checkServiceSpec, serviceCapabilities, TUNNEL_TYPES } from "../../../node/services/catalog";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { tempDir } from "../../../scripts/lib/tmp";

const UNITS = path.resolve(__dirname, "..", "..", "..", "packaging", "systemd");
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

/** The value of `key` in a unit file's [Service] section (the last one, as systemd reads a repeated key). */
function setting(unit: string, key: string): string | undefined {
  const lines = fs
    .readFileSync(path.join(UNITS, unit), "utf8")
    .split("\n")
    .filter((l) => l.startsWith(`${key}=`));
  return lines.length ? lines[lines.length - 1].slice(key.length + 1) : undefined;
}

/**
 * packaging/systemd's units, as systemd would load them: `systemd-analyze verify` (offline, no
 * running systemd needed; it fails on an unknown setting only as a warning, so the test wants no
 * output at all) with ExecStart pointed at an executable here (the units name /usr/local/bin/myst,
 * where `npm install -g` puts it), and the provider's capabilities held to what the service types
 * declare (node/services/capabilities.ts, measured in test/e2e/least-privilege.test.ts).
 */
describe("systemd units (packaging/systemd)", function () {
  this.timeout(60_000);
  const units = ["myst-provider.service", "myst-consumer.service"];
  let tmp: ReturnType<typeof tempDir>;

  before(function () {
    requirePrerequisites(this, "systemd units", fs.existsSync(SYSTEMD_ANALYZE) ? [] : ["systemd-analyze (apt-get install systemd, or scripts/install.sh)"]);
    tmp = tempDir("myst-units-");
    const myst = path.join(tmp.dir, "myst");
    fs.writeFileSync(myst, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    for (const unit of units) {
      const text = fs.readFileSync(path.join(UNITS, unit), "utf8");
      expect(text, `${unit} runs /usr/local/bin/myst`).to.include("ExecStart=/usr/local/bin/myst ");
      fs.writeFileSync(path.join(tmp.dir, unit), text.replaceAll("/usr/local/bin/myst", myst));
    }
  });

  after(() => tmp?.cleanup());

  it("pass `systemd-analyze verify` without a warning", function () {
    const r = spawnSync(SYSTEMD_ANALYZE, ["verify", "--man=no", ...units.map((u) => path.join(tmp.dir, u))], { encoding: "utf8" });
    expect(r.stderr + r.stdout).to.equal("");
    expect(r.status).to.equal(0);
  });

  it("are hardened: their own user, no new privileges, a read-only system, no home, a private /tmp, a state directory", function () {
    for (const unit of units) {
      expect(setting(unit, "DynamicUser"), unit).to.equal("yes");
      expect(setting(unit, "NoNewPrivileges"), unit).to.equal("yes");
      expect(setting(unit, "ProtectSystem"), unit).to.equal("strict");
      expect(setting(unit, "ProtectHome"), unit).to.equal("yes");
      expect(setting(unit, "PrivateTmp"), unit).to.equal("yes");
      expect(setting(unit, "StateDirectory"), unit).to.match(/^myst-/);
      expect(setting(unit, "RestrictAddressFamilies"), unit).to.match(/^AF_UNIX AF_INET AF_INET6/);
      // systemd's own exposure score (0 safest, 10 unprotected); "OK" is below 5.
      const score = execFileSync(SYSTEMD_ANALYZE, ["security", "--offline=yes", "--no-pager", path.join(tmp.dir, unit)], { encoding: "utf8" });
      const exposure = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(score)?.[1]);
      expect(exposure, `${unit}: ${score.split("\n").slice(-2).join(" ")}`).to.be.below(5);
    }
  });

  it("give the provider exactly the capabilities its service types declare, ambient and bounding, and the consumer none", function () {
    const declared = new Set(
      TUNNEL_TYPES.flatMap((t) => {
        const spec = checkServiceSpec({ type: t.type, ...(t.settings && "publicIp" in t.settings.properties ? { [t.type]: { publicIp: "198.18.3.2" } } : {}) });
        return serviceCapabilities(spec).map((n) => n.capability);
      }),
    );
    const sorted = (v?: string) => (v ?? "").split(/\s+/).filter(Boolean).sort();
    expect(sorted(setting("myst-provider.service", "CapabilityBoundingSet"))).to.deep.equal([...declared].sort());
    expect(sorted(setting("myst-provider.service", "AmbientCapabilities"))).to.deep.equal([...declared].sort());
    expect(setting("myst-consumer.service", "CapabilityBoundingSet")).to.equal("");
    expect(setting("myst-consumer.service", "AmbientCapabilities")).to.equal("");
  });
});
