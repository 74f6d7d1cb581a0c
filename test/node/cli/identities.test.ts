import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { Wallet } from "ethers";
import { buildCli, myst } from "../../support/cli";
import { testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { tempDir } from "../../../scripts/lib/tmp";

describe("myst identities (the command, spawned as a user runs it)", function () {
  let chain: LocalChain;
  let tmp: ReturnType<typeof tempDir>;
  let env: NodeJS.ProcessEnv;

  before(async function () {
    buildCli();
    chain = await testChain();
  });
  after(async () => chain?.stop());
  beforeEach(() => {
    tmp = tempDir();
    env = {
      MYST_DATA_DIR: tmp.dir,
      MYST_RPC_URL: chain.rpcUrl,
      MYST_DEPLOYMENT: chain.deploymentFile,
      MYST_LIGHT_KDF: "1",
      MYST_PASSPHRASE: "test passphrase",
    };
  });
  afterEach(() => tmp.cleanup());

  async function newIdentity(): Promise<string> {
    const r = await myst(["identities", "new", "--json"], env);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout).address;
  }

  it("creates an identity, registers it and reports it registered (--json)", async function () {
    const address = await newIdentity();
    expect(address).to.match(/^0x[0-9a-fA-F]{40}$/);
    await chain.fund([address]);

    let r = await myst(["identities", "status", address, "--json"], env);
    expect(r.code).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ state: "unregistered", identity: address });

    r = await myst(["identities", "register", address, "--json"], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ state: "registered", identity: address, beneficiary: address });

    r = await myst(["identities", "status", address], env);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(new RegExp(`^registered \\(earnings go to ${address}\\)`));
  });

  it("registers through a relayer named by a key file", async function () {
    const address = await newIdentity();
    const relayer = Wallet.createRandom();
    await chain.fund([relayer.address]);
    const keyFile = path.join(tmp.dir, "relayer.key");
    fs.writeFileSync(keyFile, relayer.privateKey + "\n");
    const r = await myst(["identities", "register", address, "--relayer-key-file", keyFile, "--json"], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout).state).to.equal("registered");
  });

  it("fails registration of an unfunded identity with one line naming the problem", async function () {
    const address = await newIdentity();
    const r = await myst(["identities", "register", address], env);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split("\n")).to.have.length(1);
    expect(r.stderr).to.include(`${address} holds no ETH`);
  });

  it("lists, shows with the public key, exports and re-imports an identity", async function () {
    const address = await newIdentity();
    let r = await myst(["identities", "list", "--json"], env);
    expect(JSON.parse(r.stdout).map((e: { address: string }) => e.address)).to.deep.equal([address]);

    r = await myst(["identities", "show", address, "--json"], env);
    const shown = JSON.parse(r.stdout);
    expect(shown.publicKey).to.match(/^0x[0-9a-f]{128}$/);
    expect(shown.registration.state).to.equal("unregistered");

    const out = path.join(tmp.dir, "backup.json");
    r = await myst(["identities", "export", address, "--out", out, "--new-passphrase", "backup pass"], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(fs.statSync(out).mode & 0o777).to.equal(0o600);
    expect((await Wallet.fromEncryptedJson(fs.readFileSync(out, "utf8"), "backup pass")).address).to.equal(address);

    const other = tempDir();
    try {
      r = await myst(["identities", "import", out, "--passphrase", "backup pass", "--json"], { ...env, MYST_DATA_DIR: other.dir });
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout).address).to.equal(address);
    } finally {
      other.cleanup();
    }
  });

  it("says what is wrong, in one line, for user mistakes", async function () {
    const address = await newIdentity();
    const cases: [string[], NodeJS.ProcessEnv, number, RegExp][] = [
      [["identities", "show", address, "--passphrase", "wrong"], env, 1, /wrong passphrase for /],
      [["identities", "new"], { ...env, MYST_PASSPHRASE: undefined }, 1, /a passphrase is needed/],
      [["identities", "status", "0x1234"], env, 1, /identity "0x1234" is not an address/],
      [["identities", "import", path.join(tmp.dir, "missing.json")], env, 1, /cannot read .*missing\.json/],
      [["identities", "frobnicate"], env, 2, /unknown command 'frobnicate'/],
      [["identities", "list", "--bogus"], env, 2, /unknown option '--bogus'/],
      [["identities", "status", address], { ...env, MYST_RPC_URL: "http://127.0.0.1:9" }, 1, /cannot reach the chain at http:\/\/127\.0\.0\.1:9/],
      [["identities", "status", address], { ...env, MYST_DEPLOYMENT: path.join(tmp.dir, "none.json") }, 1, /deployment file .*none\.json: not found/],
    ];
    for (const [args, e, code, pattern] of cases) {
      const r = await myst(args, e);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).to.equal(code);
      expect(r.stderr, args.join(" ")).to.match(pattern);
      expect(r.stderr, args.join(" ")).to.not.match(/\n\s+at /);
    }
  });

  it("prints help for the program and every command", async function () {
    for (const args of [["--help"], ["identities", "--help"], ["identities", "register", "--help"]]) {
      const r = await myst(args, env);
      expect(r.code).to.equal(0);
      expect(r.stdout).to.match(/^Usage: myst/);
    }
  });
});
