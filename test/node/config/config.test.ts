import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { defaultConfig, loadConfig } from "../../../node/config/config";
import { tempDir } from "../../../scripts/lib/tmp";

describe("config", function () {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it("starts from documented defaults", function () {
    const config = loadConfig({ dataDir: tmp.dir }, {});
    expect(config).to.deep.equal({ ...defaultConfig(), dataDir: tmp.dir });
    expect(config.brokerUrls).to.deep.equal(["nats://127.0.0.1:4222"]);
  });

  it("layers config file, then environment, then flags", function () {
    fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ rpcUrl: "http://file:1", discoveryUrls: ["http://file:2"], logLevel: "debug" }));
    const config = loadConfig(
      { dataDir: tmp.dir, rpcUrl: "http://flag:1" },
      { MYST_RPC_URL: "http://env:1", MYST_DISCOVERY_URLS: "http://env:2, http://env:3", MYST_BROKER_URLS: "nats://a:1, nats://b:2" },
    );
    expect(config.rpcUrl).to.equal("http://flag:1");
    expect(config.discoveryUrls).to.deep.equal(["http://env:2", "http://env:3"]);
    expect(config.logLevel).to.equal("debug");
    expect(config.brokerUrls).to.deep.equal(["nats://a:1", "nats://b:2"]);
  });

  it("names the bad setting and where it came from", function () {
    expect(() => loadConfig({ dataDir: tmp.dir, rpcUrl: "not a url" }, {})).to.throw(/setting rpcUrl \(from --rpc-url\) must be an http\(s\) URL/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_LOG_LEVEL: "loud" })).to.throw(/logLevel \(from MYST_LOG_LEVEL\) must be one of/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_BROKER_URLS: "http://x" })).to.throw(/brokerUrls \(from MYST_BROKER_URLS\) has "http:\/\/x"/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_REGISTRATION_TIMEOUT_MS: "-5" })).to.throw(/registrationTimeoutMs/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_OUTAGE_TOLERANCE_MS: "soon" })).to.throw(
      /outageToleranceMs \(from MYST_OUTAGE_TOLERANCE_MS\) must be a positive number/,
    );
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_OUTAGE_TOLERANCE_MS: "30000" }).outageToleranceMs).to.equal(30_000);
    expect(() => loadConfig({ dataDir: tmp.dir, logFormat: "xml" }, {})).to.throw(/setting logFormat \(from --log-format\) must be one of json, pretty/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_API_HOST: "localhost" })).to.throw(/apiHost \(from MYST_API_HOST\) must be an IP address/);
    expect(() => loadConfig({ dataDir: tmp.dir, apiPort: "70000" }, {})).to.throw(/apiPort \(from --api-port\) must be a port number/);
  });

  it("takes the daemon's API address and the log format from the environment and flags", function () {
    const config = loadConfig({ dataDir: tmp.dir, apiPort: "0", logFormat: "pretty" }, { MYST_API_HOST: "127.0.0.2", MYST_API_PORT: "5000" });
    expect(config).to.include({ apiHost: "127.0.0.2", apiPort: 0, logFormat: "pretty" });
  });

  it("rejects an unknown setting, bad JSON, and a missing explicit config file", function () {
    const file = path.join(tmp.dir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ rpcURL: "http://x" }));
    expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/unknown setting "rpcURL"/);
    fs.writeFileSync(file, "{ nope");
    expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/is not valid JSON/);
    expect(() => loadConfig({ config: path.join(tmp.dir, "missing.json") }, {})).to.throw(/cannot read config file/);
  });
});
