import { expect } from "chai";
import path from "node:path";
import { Wallet, getBytes, hexlify, TypedDataEncoder } from "ethers";
import { connectChain, type ChainConnection } from "../../../node/chain/connect";
import { beneficiaryChangeTypes, registryDomain } from "../../../node/chain/eip712";
import { RegistrationRecords, Registrar } from "../../../node/chain/registration";
import { IdentityRegistryClient } from "../../../node/chain/registry";
import { IdentityKey, toHex } from "../../../node/identity/key";
import { fundedWallet, testChain, type LocalChain } from "../../../scripts/lib/local-chain";
import { tempDir } from "../../../scripts/lib/tmp";
import { until } from "../../../scripts/lib/until";

describe("chain: registration and registry lookups (local Hardhat node)", function () {
  let chain: LocalChain;
  let conn: ChainConnection;
  let tmp: ReturnType<typeof tempDir>;
  let relayer: Wallet;

  before(async function () {
    chain = await testChain();
    conn = await connectChain({ rpcUrl: chain.rpcUrl, deployment: chain.deployment });
    relayer = await fundedWallet(chain, conn.provider);
  });
  after(async function () {
    conn?.close();
    await chain?.stop();
  });
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  function registrar(client = new IdentityRegistryClient(conn)) {
    return new Registrar(conn, client, new RegistrationRecords(path.join(tmp.dir, "registrations")));
  }

  describe("connecting", function () {
    it("names an unreachable chain", async function () {
      const err = await connectChain({ rpcUrl: "http://127.0.0.1:9", deployment: chain.deployment, timeoutMs: 1000 }).catch((e) => e);
      expect(err.code).to.equal("CHAIN_UNREACHABLE");
      expect(err.message).to.include("http://127.0.0.1:9");
    });

    it("refuses a deployment made for another chain", async function () {
      const err = await connectChain({ rpcUrl: chain.rpcUrl, deployment: { ...chain.deployment, chainId: 5 } }).catch((e) => e);
      expect(err.code).to.equal("CHAIN_MISMATCH");
    });

    it("refuses a deployment whose registry is not on this chain", async function () {
      const contracts = { ...chain.deployment.contracts, IdentityRegistry: Wallet.createRandom().address };
      const err = await connectChain({ rpcUrl: chain.rpcUrl, deployment: { ...chain.deployment, contracts } }).catch((e) => e);
      expect(err.code).to.equal("NO_CONTRACT");
    });
  });

  describe("registering", function () {
    it("registers an identity that pays its own gas, and publishes the key that signed", async function () {
      const key = IdentityKey.generate();
      await chain.fund([key.address], { eth: 10n ** 18n, myst: 0n + 1n });
      const r = registrar();
      expect(await r.status(key.address)).to.deep.equal({ state: "unregistered", identity: key.address });
      const status = await r.register(key, { submitter: new Wallet(key.privateKeyHex(), conn.provider), timeoutMs: 10_000 });
      expect(status.state).to.equal("registered");
      expect(status).to.include({ beneficiary: key.address });
      expect(hexlify(await conn.registry.publicKeyOf(key.address))).to.equal(toHex(key.publicKey));
      expect(await r.status(key.address)).to.include({ state: "registered" });
    });

    it("registers through a relayer while the identity holds no ETH, with a beneficiary", async function () {
      const key = IdentityKey.generate();
      const beneficiary = Wallet.createRandom().address;
      expect(await conn.provider.getBalance(key.address)).to.equal(0n);
      const status = await registrar().register(key, { submitter: relayer, beneficiary, timeoutMs: 10_000 });
      expect(status).to.include({ state: "registered", beneficiary });
      expect(await conn.registry.isRegistered(key.address)).to.equal(true);
    });

    it("refuses to submit from an account without ETH, naming it, and stays unregistered", async function () {
      const key = IdentityKey.generate();
      const r = registrar();
      const err = await r.register(key, { submitter: new Wallet(key.privateKeyHex(), conn.provider), timeoutMs: 1000 }).catch((e) => e);
      expect(err.code).to.equal("INSUFFICIENT_FUNDS");
      expect(err.message).to.include(key.address);
      expect((await r.status(key.address)).state).to.equal("unregistered");
    });

    it("treats registering a registered identity as done", async function () {
      const key = IdentityKey.generate();
      const r = registrar();
      await r.register(key, { submitter: relayer, timeoutMs: 10_000 });
      const again = await r.register(key, { submitter: relayer, timeoutMs: 10_000 });
      expect(again.state).to.equal("registered");
    });

    describe("when blocks are not mined at once", function () {
      beforeEach(async () => conn.provider.send("evm_setAutomine", [false]));
      afterEach(async () => {
        await conn.provider.send("evm_setAutomine", [true]);
        await conn.provider.send("evm_mine", []);
      });

      it("reports in progress with the transaction hash, then registered once mined", async function () {
        const key = IdentityKey.generate();
        const r = registrar();
        const pending = await r.register(key, { submitter: relayer, timeoutMs: 300 });
        expect(pending.state).to.equal("in-progress");
        const txHash = (pending as { txHash: string }).txHash;
        expect(await r.status(key.address)).to.include({ state: "in-progress", txHash });
        await conn.provider.send("evm_mine", []);
        expect(await r.status(key.address)).to.include({ state: "registered", txHash });
      });

      it("replaces a stuck registration with a higher fee when retried", async function () {
        const key = IdentityKey.generate();
        const r = registrar();
        const first = (await r.register(key, { submitter: relayer, timeoutMs: 300 })) as { state: string; txHash: string };
        const second = (await r.register(key, { submitter: relayer, timeoutMs: 300 })) as { state: string; txHash: string };
        expect(second.state).to.equal("in-progress");
        expect(second.txHash).to.not.equal(first.txHash);
        const [tx1, tx2] = await Promise.all([conn.provider.getTransaction(first.txHash), conn.provider.getTransaction(second.txHash)]);
        expect(tx2!.nonce).to.equal(tx1?.nonce ?? tx2!.nonce);
        expect(tx2!.maxFeePerGas! > (tx1?.maxFeePerGas ?? 0n)).to.equal(true);
        await conn.provider.send("evm_mine", []);
        expect(await r.status(key.address)).to.include({ state: "registered", txHash: second.txHash });
        expect(await conn.provider.getTransactionReceipt(first.txHash)).to.equal(null);
      });

      it("reports a dropped transaction as failed, and a retry registers", async function () {
        const key = IdentityKey.generate();
        const r = registrar();
        const pending = (await r.register(key, { submitter: relayer, timeoutMs: 300 })) as { txHash: string };
        await conn.provider.send("hardhat_dropTransaction", [pending.txHash]);
        expect(await r.status(key.address)).to.include({ state: "failed", code: "TX_DROPPED" });
        await conn.provider.send("evm_setAutomine", [true]);
        expect((await r.register(key, { submitter: relayer, timeoutMs: 10_000 })).state).to.equal("registered");
      });
    });
  });

  describe("lookups", function () {
    it("learns of a registration from the registry's events, not by asking again", async function () {
      const client = new IdentityRegistryClient(conn, { negativeTtlMs: 3_600_000 });
      await client.start();
      try {
        const key = IdentityKey.generate();
        expect(await client.lookup(key.address)).to.equal(null);
        await registrar(new IdentityRegistryClient(conn)).register(key, { submitter: relayer, timeoutMs: 10_000 });
        const record = await until(() => client.lookup(key.address), "the IdentityRegistered event");
        expect(toHex(record.publicKey)).to.equal(toHex(key.publicKey));
      } finally {
        await client.stop();
      }
    });

    it("follows beneficiary changes from events", async function () {
      const client = new IdentityRegistryClient(conn);
      await client.start();
      try {
        const key = IdentityKey.generate();
        await registrar().register(key, { submitter: relayer, timeoutMs: 10_000 });
        expect(await client.beneficiaryOf(key.address)).to.equal(key.address);
        const beneficiary = Wallet.createRandom().address;
        const domain = registryDomain(conn.chainId, chain.deployment.contracts.IdentityRegistry);
        const digest = TypedDataEncoder.hash(domain, beneficiaryChangeTypes, { identity: key.address, beneficiary, nonce: 0n });
        const tx = await conn.registry.connect(relayer).setBeneficiary(key.address, beneficiary, 0n, key.signDigest(getBytes(digest)));
        await tx.wait();
        await until(async () => (await client.beneficiaryOf(key.address)) === beneficiary, "the BeneficiaryChanged event");
      } finally {
        await client.stop();
      }
    });

    it("refuses a malformed address with a clear error", async function () {
      const err = await new IdentityRegistryClient(conn).lookup("0xnope").catch((e) => e);
      expect(err.code).to.equal("INVALID_ADDRESS");
    });
  });
});
