import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { defaultConfig, loadConfig } from "../../../node/config/config";
import { defaultPaymentPolicy, parsePaymentPolicy } from "../../../node/config/payment-policy";
import { silentLogger } from "../../../node/log/logger";
import { consumerSpares } from "../../../node/services/catalog";
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

  it("keeps no spare WireGuard device unless asked (MYST_WIREGUARD_SPARE or the file), and names a bad value", function () {
    expect(loadConfig({ dataDir: tmp.dir }, {}).wireguardSpare).to.equal(false);
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_WIREGUARD_SPARE: "true" }).wireguardSpare).to.equal(true);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_WIREGUARD_SPARE: "one" })).to.throw(
      /wireguardSpare \(from MYST_WIREGUARD_SPARE\) must be true or false/,
    );
    expect([...consumerSpares({ dataDir: tmp.dir, log: silentLogger, types: ["wireguard"] }).keys()]).to.deep.equal(["wireguard"]);
  });

  it("keeps no spare openvpn unless asked (MYST_OPENVPN_SPARE or the file), and names a bad value", function () {
    expect(loadConfig({ dataDir: tmp.dir }, {}).openvpnSpare).to.equal(false);
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_OPENVPN_SPARE: "true" }).openvpnSpare).to.equal(true);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_OPENVPN_SPARE: "two" })).to.throw(/openvpnSpare \(from MYST_OPENVPN_SPARE\) must be true or false/);
    expect([...consumerSpares({ dataDir: tmp.dir, log: silentLogger, types: ["openvpn"] }).keys()]).to.deep.equal(["openvpn"]);
    expect([...consumerSpares({ dataDir: tmp.dir, log: silentLogger }).keys()].sort()).to.deep.equal(["openvpn", "wireguard"]);
  });

  it("keeps no disarmed kill-switch table between connections unless asked (MYST_KILL_SWITCH_SPARE or the file), and names a bad value", function () {
    expect(loadConfig({ dataDir: tmp.dir }, {}).killSwitchSpare).to.equal(false);
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_KILL_SWITCH_SPARE: "true" }).killSwitchSpare).to.equal(true);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_KILL_SWITCH_SPARE: "yes please" })).to.throw(
      /killSwitchSpare \(from MYST_KILL_SWITCH_SPARE\) must be true or false/,
    );
  });

  it("takes the reachability settings (STUN servers, port mapping, the measured port) from the file and the environment, and names bad ones", function () {
    expect(loadConfig({ dataDir: tmp.dir }, {})).to.include({ portMapping: true, natPort: 0 });
    expect(loadConfig({ dataDir: tmp.dir }, {}).stunServers).to.deep.equal([]);
    fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ stunServers: ["stun.example.org", "[2001:db8::1]:3478"], portMapping: false }));
    const fromFile = loadConfig({ dataDir: tmp.dir }, {});
    expect([fromFile.stunServers, fromFile.portMapping]).to.deep.equal([["stun.example.org", "[2001:db8::1]:3478"], false]);
    const fromEnv = loadConfig(
      { dataDir: tmp.dir },
      { MYST_STUN_SERVERS: "198.18.2.2:3478, 198.18.2.3:3479", MYST_PORT_MAPPING: "true", MYST_NAT_PORT: "51820" },
    );
    expect([fromEnv.stunServers, fromEnv.portMapping, fromEnv.natPort]).to.deep.equal([["198.18.2.2:3478", "198.18.2.3:3479"], true, 51820]);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_STUN_SERVERS: "stun.example.org:99999" })).to.throw(
      /stunServers \(from MYST_STUN_SERVERS\) has "stun.example.org:99999"/,
    );
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_PORT_MAPPING: "maybe" })).to.throw(/portMapping \(from MYST_PORT_MAPPING\) must be true or false/);
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_NAT_PORT: "70000" })).to.throw(/natPort \(from MYST_NAT_PORT\) must be a port number/);
  });

  it("takes the node's own country (a consumer's relay pick) from the file or MYST_COUNTRY, upper-cased, and names a bad one", function () {
    expect(loadConfig({ dataDir: tmp.dir }, {}).country).to.equal(undefined);
    fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ country: "de" }));
    expect(loadConfig({ dataDir: tmp.dir }, {}).country).to.equal("DE");
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_COUNTRY: "fr" }).country).to.equal("FR");
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_COUNTRY: "France" })).to.throw(/country \(from MYST_COUNTRY\) must be a two-letter country code/);
  });

  it("takes the address-check URL from the file as well as from MYST_IP_CHECK_URL", function () {
    fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ ipCheckUrl: "https://ip.example/" }));
    expect(loadConfig({ dataDir: tmp.dir }, {}).ipCheckUrl).to.equal("https://ip.example/");
    expect(loadConfig({ dataDir: tmp.dir }, { MYST_IP_CHECK_URL: "http://198.18.2.2/" }).ipCheckUrl).to.equal("http://198.18.2.2/");
  });

  it("takes the stage checks' target and the prober's confinement from the file and the environment, and names bad ones", function () {
    fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ tunnelCheckName: "example.com", proberConfined: true }));
    const config = loadConfig({ dataDir: tmp.dir }, { MYST_TUNNEL_CHECK_URL: "http://198.18.2.2:8080/" });
    expect(config).to.include({ tunnelCheckName: "example.com", tunnelCheckUrl: "http://198.18.2.2:8080/", proberConfined: true });
    // The fetch goes to an address: a name would need a resolver outside the tunnel.
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_TUNNEL_CHECK_URL: "http://speed.example:80/" })).to.throw(
      /tunnelCheckUrl \(from MYST_TUNNEL_CHECK_URL\) must be an http URL whose host is an IPv4 address/,
    );
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_TUNNEL_CHECK_NAME: "not a name!" })).to.throw(
      /tunnelCheckName \(from MYST_TUNNEL_CHECK_NAME\) must be a DNS name/,
    );
    expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_PROBER_CONFINED: "maybe" })).to.throw(/proberConfined .* must be true or false/);
  });

  it("rejects an unknown setting, bad JSON, and a missing explicit config file", function () {
    const file = path.join(tmp.dir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ rpcURL: "http://x" }));
    expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/unknown setting "rpcURL"/);
    fs.writeFileSync(file, "{ nope");
    expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/is not valid JSON/);
    expect(() => loadConfig({ config: path.join(tmp.dir, "missing.json") }, {})).to.throw(/cannot read config file/);
  });

  describe("the payment policy (paymentPolicy)", function () {
    it("starts from its documented defaults", function () {
      const { paymentPolicy } = loadConfig({ dataDir: tmp.dir }, {});
      expect(paymentPolicy).to.deep.equal(defaultPaymentPolicy());
      expect(paymentPolicy).to.include({
        maxSessions: 50,
        invoiceEveryMs: 10_000,
        maxUnpaid: 5n * 10n ** 16n,
        exposurePercentOfEscrow: 50,
        settleOnSessionEnd: false,
      });
    });

    it("takes any of its settings from the config file, and the flags of the same names override them", function () {
      fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ paymentPolicy: { maxUnpaid: "0.2", invoiceEvery: 30, settleOnSessionEnd: true } }));
      const { paymentPolicy } = loadConfig({ dataDir: tmp.dir }, {});
      expect(paymentPolicy).to.deep.equal({ ...defaultPaymentPolicy(), maxUnpaid: 2n * 10n ** 17n, invoiceEveryMs: 30_000, settleOnSessionEnd: true });
      const flagged = parsePaymentPolicy({ maxUnpaid: "0.3", minEscrow: undefined }, paymentPolicy);
      expect(flagged).to.deep.equal({ ...paymentPolicy, maxUnpaid: 3n * 10n ** 17n });
    });

    it("names a bad or unknown setting and the file it came from", function () {
      const file = path.join(tmp.dir, "config.json");
      fs.writeFileSync(file, JSON.stringify({ paymentPolicy: { maxUnpaid: "lots" } }));
      expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(
        /setting paymentPolicy.maxUnpaid \(from config file .*config.json\) "lots" is not an amount of MYST/,
      );
      fs.writeFileSync(file, JSON.stringify({ paymentPolicy: { exposurePercent: 150 } }));
      expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/paymentPolicy.exposurePercent .* is not a percentage from 0 to 100/);
      fs.writeFileSync(file, JSON.stringify({ paymentPolicy: { maxUnpayed: "1" } }));
      expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/setting paymentPolicy .* has unknown settings: maxUnpayed/);
      fs.writeFileSync(file, JSON.stringify({ paymentPolicy: "generous" }));
      expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/must be an object of payment settings/);
    });
  });

  describe("broker credentials", function () {
    const write = (name: string, text: string) => {
      const file = path.join(tmp.dir, name);
      fs.writeFileSync(file, text, { mode: 0o600 });
      return file;
    };
    const SEED = "SUAM3OQ5NFDRS27MMKPUNW7RPMAAYK2ZEZJLEHDK7Y2TUI4LDBXV5DUSMQ";

    it("reads a user and password file, a token file, an nkey seed file or a .creds file once, from env or flags", function () {
      const pass = write("pass", "s3cret\n");
      expect(loadConfig({ dataDir: tmp.dir }, { MYST_BROKER_USER: "myst-discovery", MYST_BROKER_PASSWORD_FILE: pass }).brokerCredentials).to.deep.equal({
        kind: "password",
        user: "myst-discovery",
        pass: "s3cret",
      });
      expect(loadConfig({ dataDir: tmp.dir, brokerTokenFile: write("token", "t0ken") }, {}).brokerCredentials).to.deep.equal({ kind: "token", token: "t0ken" });
      const nkey = loadConfig({ dataDir: tmp.dir, brokerNkeyFile: write("seed", SEED + "\n") }, {}).brokerCredentials;
      expect(nkey?.kind === "nkey" && Buffer.from(nkey.seed).toString()).to.equal(SEED);
      const creds = `-----BEGIN NATS USER JWT-----\neyJ0eXAi.x.y\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${SEED}\n------END USER NKEY SEED------\n`;
      expect(loadConfig({ dataDir: tmp.dir }, { MYST_BROKER_CREDS_FILE: write("u.creds", creds) }).brokerCredentials?.kind).to.equal("creds");
      expect(loadConfig({ dataDir: tmp.dir }, {}).brokerCredentials).to.equal(undefined);
    });

    it("names a missing, unreadable, empty or wrong credential file, and a credential given twice", function () {
      const missing = path.join(tmp.dir, "nope.password");
      expect(() => loadConfig({ dataDir: tmp.dir, brokerUser: "u", brokerPasswordFile: missing }, {})).to.throw(
        `setting brokerPasswordFile (from --broker-password-file) names ${missing}, which cannot be read (no such file)`,
      );
      expect(() => loadConfig({ dataDir: tmp.dir }, { MYST_BROKER_TOKEN_FILE: tmp.dir })).to.throw(
        /brokerTokenFile \(from MYST_BROKER_TOKEN_FILE\) names .*, which cannot be read \(a directory\)/,
      );
      expect(() => loadConfig({ dataDir: tmp.dir, brokerTokenFile: write("empty", "\n") }, {})).to.throw(/brokerTokenFile .* which is empty/);
      expect(() => loadConfig({ dataDir: tmp.dir, brokerNkeyFile: write("notseed", "hello") }, {})).to.throw(
        /brokerNkeyFile .* does not hold a user nkey seed/,
      );
      expect(() => loadConfig({ dataDir: tmp.dir, brokerCredsFile: write("bad.creds", "hello") }, {})).to.throw(/brokerCredsFile .* is not a NATS .creds file/);
      expect(() => loadConfig({ dataDir: tmp.dir, brokerUser: "u" }, {})).to.throw(/brokerUser \(from --broker-user\) needs brokerPasswordFile/);
      expect(() => loadConfig({ dataDir: tmp.dir, brokerPasswordFile: write("p", "x") }, {})).to.throw(/brokerPasswordFile .* needs brokerUser/);
      expect(() => loadConfig({ dataDir: tmp.dir, brokerTokenFile: write("t", "x") }, { MYST_BROKER_NKEY_FILE: write("s", SEED) })).to.throw(
        /brokerNkeyFile \(from MYST_BROKER_NKEY_FILE\) cannot be combined with brokerTokenFile/,
      );
      fs.writeFileSync(path.join(tmp.dir, "config.json"), JSON.stringify({ brokerCredentials: { kind: "token", token: "x" } }));
      expect(() => loadConfig({ dataDir: tmp.dir }, {})).to.throw(/unknown setting "brokerCredentials"/);
    });
  });
});
