import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { ContractTransactionResponse, Wallet } from "ethers";
import { CHALLENGE_PERIOD, newIdentity, pack, signPromise, signRelayed, systemFixture, unpack } from "./fixtures";

const E = ethers.parseEther;
const N = BigInt("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");

/** A deterministic generator, so a failing run can be replayed. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  return (max: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % max;
  };
}

interface ModelVault {
  balance: bigint;
  escrow: bigint;
}

/** Four funded consumers (balance and escrow), two providers. */
async function manyFixture() {
  const f = await systemFixture();
  const address = await f.vault.getAddress();
  const consumers: Wallet[] = [f.consumer, f.consumer2, await newIdentity(), await newIdentity()];
  for (const c of consumers.slice(2)) {
    await f.token.transfer(c.address, E("1000"));
    await f.token.connect(c).approve(address, ethers.MaxUint256);
  }
  for (const [i, c] of consumers.entries()) await f.vault.connect(c).deposit(c.address, E(String(3 + i)), E(String(1 + i)));
  return { ...f, address, consumers, providers: [f.provider, f.provider2] };
}

describe("ConsumerVault: review of the packed, assembly settlement", function () {
  describe("the assembly run and the Solidity path agree with the old per-promise rules", function () {
    it("matches a model of cumulative promises, skips and overdrafts over random batches, relayed ones included", async function () {
      const { vault, address, consumers, providers, relayer } = await loadFixture(manyFixture);
      const rnd = prng(20261206);
      const vaults = new Map<string, ModelVault>();
      for (const [i, c] of consumers.entries()) vaults.set(c.address, { balance: E(String(3 + i)), escrow: E(String(1 + i)) });
      const settled = new Map<string, bigint>();
      const key = (c: string, p: string) => `${c}/${p}`;
      const earnings = new Map<string, bigint>(providers.map((p) => [p.address, 0n]));
      const parities = new Set<number>();
      const seenKinds = { skipped: 0, overdrafts: 0, single: 0 };

      for (let round = 0; round < 24; round++) {
        const provider = providers[rnd(2)];
        const size = 1 + rnd(6);
        const packed: string[] = [];
        const expected: { consumer: string; paid: bigint; total: bigint; forfeited?: [bigint, bigint] }[] = [];
        let paidTotal = 0n;
        // Promises are chosen against the model as it will be when the contract reaches them.
        for (let i = 0; i < size; i++) {
          const c = consumers[rnd(consumers.length)];
          const done = settled.get(key(c.address, provider.address)) ?? 0n;
          const v = vaults.get(c.address)!;
          const kind = rnd(5);
          const step = E("0.1") * BigInt(1 + rnd(30));
          const amount = kind === 0 ? (done > step ? done - step : 0n) : kind === 1 ? done : done + step;
          const p = await signPromise(c, address, provider.address, amount);
          parities.add(Number(BigInt(unpack(p).vs) >> 255n));
          packed.push(p);
          if (amount <= done) {
            seenKinds.skipped++;
            continue;
          }
          const owed = amount - done;
          let paid: bigint;
          if (owed <= v.balance) {
            paid = owed;
            v.balance -= owed;
          } else {
            if (v.balance === 0n && v.escrow === 0n) {
              seenKinds.skipped++;
              continue;
            }
            seenKinds.overdrafts++;
            let fromEscrow = owed - v.balance;
            if (fromEscrow > v.escrow / 2n) fromEscrow = v.escrow / 2n;
            paid = v.balance + fromEscrow;
            expected.push({ consumer: c.address, paid: 0n, total: 0n, forfeited: [fromEscrow, v.escrow - fromEscrow] });
            v.balance = 0n;
            v.escrow = 0n;
            if (paid === 0n) continue;
          }
          settled.set(key(c.address, provider.address), done + paid);
          expected.push({ consumer: c.address, paid, total: done + paid });
          paidTotal += paid;
        }
        const relayed = round % 4 === 3 && paidTotal > 0n;
        let tx: ContractTransactionResponse;
        if (relayed) {
          const claims = packed.map((p) => ({ consumer: unpack(p).consumer, amount: unpack(p).amount }));
          const nonce = await vault.relayNonce(provider.address);
          const sig = await signRelayed(provider, address, relayer.address, claims, 1n, nonce);
          tx = await vault.connect(relayer).settleRelayed(provider.address, relayer.address, ethers.concat(packed), 1n, 1n, nonce, sig);
          earnings.set(provider.address, 0n);
        } else if (packed.length === 1 && paidTotal > 0n) {
          seenKinds.single++;
          tx = await vault.settle(provider.address, packed[0]);
          earnings.set(provider.address, earnings.get(provider.address)! + paidTotal);
        } else {
          tx = await vault.settleBatch(provider.address, ethers.concat(packed));
          earnings.set(provider.address, earnings.get(provider.address)! + paidTotal);
        }
        const logs = (await tx.wait())!.logs
          .filter((l) => l.address === address)
          .map((l) => vault.interface.parseLog(l)!)
          .filter((e) => e.name === "PromiseSettled" || e.name === "EscrowForfeited");
        const seen = logs.map((e) =>
          e.name === "PromiseSettled"
            ? { consumer: e.args[0], paid: e.args[2], total: e.args[3] }
            : { consumer: e.args[0], paid: 0n, total: 0n, forfeited: [e.args[2], e.args[3]] },
        );
        expect(seen, `round ${round}: events`).to.deep.equal(expected);
        for (const p of logs) expect(p.args[1]).to.equal(provider.address);
      }
      for (const c of consumers) {
        const v = vaults.get(c.address)!;
        expect(await vault.vault(c.address), c.address).to.deep.equal([v.balance, v.escrow, 0n]);
        for (const p of providers) expect(await vault.settled(c.address, p.address)).to.equal(settled.get(key(c.address, p.address)) ?? 0n);
      }
      for (const p of providers) expect(await vault.earnings(p.address)).to.equal(earnings.get(p.address));
      expect([...parities].sort(), "both yParity values were exercised").to.deep.equal([0, 1]);
      expect(
        Math.min(seenKinds.skipped, seenKinds.overdrafts, seenKinds.single),
        `skips, overdrafts and single settles were exercised: ${JSON.stringify(seenKinds)}`,
      ).to.be.above(0);
    });
  });

  describe("a signature that is not the consumer's, after common promises of the same batch", function () {
    for (const [name, mutate] of [
      ["its yParity flipped", (p: ReturnType<typeof unpack>) => ({ ...p, vs: ethers.toBeHex(BigInt(p.vs) ^ (1n << 255n), 32) })],
      ["r = 0", (p: ReturnType<typeof unpack>) => ({ ...p, r: ethers.ZeroHash })],
      ["r = n (not below the group order)", (p: ReturnType<typeof unpack>) => ({ ...p, r: ethers.toBeHex(N, 32) })],
      ["s = 0", (p: ReturnType<typeof unpack>) => ({ ...p, vs: ethers.toBeHex(BigInt(p.vs) & (1n << 255n), 32) })],
      [
        // In the packed form the twin's s (n − s) almost always has its top bit set, which overlaps yParity: what is
        // sent is a wrong signature, not a high-s one (a real high-s twin fits only with a chance of about 2^-128).
        "the high-s twin with the other yParity, as packed (a wrong signature)",
        (p: ReturnType<typeof unpack>) => {
          const s = BigInt(p.vs) & ((1n << 255n) - 1n);
          const parity = BigInt(p.vs) >> 255n;
          return { ...p, vs: ethers.toBeHex(((1n - parity) << 255n) | (N - s), 32) };
        },
      ],
    ] as const) {
      it(`reverts the whole batch and changes nothing: ${name}`, async function () {
        const { vault, address, consumers, provider } = await loadFixture(manyFixture);
        const good = await signPromise(consumers[0], address, provider.address, E("1"));
        const bad = pack(mutate(unpack(await signPromise(consumers[1], address, provider.address, E("1")))));
        await expect(vault.settleBatch(provider.address, ethers.concat([good, bad]))).to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid");
        await expect(vault.settle(provider.address, bad)).to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid");
        expect(await vault.settled(consumers[0].address, provider.address)).to.equal(0n);
        expect(await vault.vault(consumers[0].address)).to.deep.equal([E("3"), E("1"), 0n]);
      });
    }
  });

  describe("calldata", function () {
    it("refuses a packed array that claims more bytes than the call carries", async function () {
      const { vault, address, consumers, provider } = await loadFixture(manyFixture);
      const p = await signPromise(consumers[0], address, provider.address, E("1"));
      const full = vault.interface.encodeFunctionData("settleBatch", [provider.address, ethers.concat([p, p])]);
      // Cut the call inside the second promise: the length word still says 192.
      const cut = ethers.dataSlice(full, 0, ethers.dataLength(full) - 64 - 32);
      await expect(consumers[0].sendTransaction({ to: address, data: cut })).to.be.reverted;
      expect(await vault.settled(consumers[0].address, provider.address)).to.equal(0n);
    });
  });

  describe("the run's limits: an increase of exactly the balance, and promises at or below the pair's figure", function () {
    it("settles the first from the balance and keeps the escrow; skips the others; an increase of one wei more is an overdraft", async function () {
      const { vault, address, consumers, provider } = await loadFixture(manyFixture);
      const [c0, c1] = consumers; // c0: 3 MYST of balance and 1 of escrow; c1: 4 and 2
      await vault.settle(provider.address, await signPromise(c0, address, provider.address, E("1")));
      const batch = [
        await signPromise(c0, address, provider.address, E("1")), // equal to the pair's figure: pays nothing
        await signPromise(c0, address, provider.address, E("0.5")), // below it: pays nothing
        await signPromise(c0, address, provider.address, E("3")), // an increase of 2, the whole balance
        await signPromise(c1, address, provider.address, E("4") + 1n), // one wei above the balance
      ];
      const tx = vault.settleBatch(provider.address, ethers.concat(batch));
      await expect(tx)
        .to.emit(vault, "PromiseSettled")
        .withArgs(c0.address, provider.address, E("2"), E("3"))
        .and.to.emit(vault, "EscrowForfeited")
        .withArgs(c1.address, provider.address, 1n, E("2") - 1n)
        .and.to.emit(vault, "PromiseSettled")
        .withArgs(c1.address, provider.address, E("4") + 1n, E("4") + 1n);
      const events = (await (await tx).wait())!.logs.filter((l) => l.address === address).map((l) => vault.interface.parseLog(l)!.name);
      expect(events, "one settlement each, no other forfeit").to.deep.equal(["PromiseSettled", "EscrowForfeited", "PromiseSettled"]);
      expect(await vault.vault(c0.address)).to.deep.equal([0n, E("1"), 0n]);
      expect(await vault.vault(c1.address)).to.deep.equal([0n, 0n, 0n]);
      expect(await vault.settled(c0.address, provider.address)).to.equal(E("3"));
      expect(await vault.earnings(provider.address)).to.equal(E("1") + E("2") + E("4") + 1n);
    });
  });

  describe("settle and settleBatch hand control to no contract (so they check the re-entrancy guard without setting it)", function () {
    /** Every opcode that could run another contract's code, on every path: calls, creations, self-destruction. */
    const HANDS_CONTROL = new Set(["CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2", "SELFDESTRUCT"]);

    it("calls nothing but the ecrecover precompile on any path, common or not, paying or reverting", async function () {
      const { vault, address, consumers, provider, deployer } = await loadFixture(manyFixture);
      const [c0, c1, c2, c3] = consumers;
      await vault.settle(provider.address, await signPromise(c0, address, provider.address, E("1")));
      await vault.settle(provider.address, await signPromise(c3, address, provider.address, E("7"))); // an overdraft: c3's vault is now empty
      const common = await signPromise(c1, address, provider.address, E("1"));
      const stale = await signPromise(c0, address, provider.address, E("1"));
      const overdraft = await signPromise(c2, address, provider.address, E("6"));
      const empty = await signPromise(c3, address, provider.address, E("10"));
      const forged = pack({ ...unpack(await signPromise(c2, address, provider.address, E("1"))), consumer: c1.address });
      // The high-s twin of a good signature, as packed: n − s overlaps yParity's bit (almost always), so this is a wrong
      // signature, not one ecrecover would take for the consumer's; the fast path's high-s check is not reached by it.
      const { vs } = unpack(common);
      const twinS = N - (BigInt(vs) & ((1n << 255n) - 1n));
      const highS = pack({ ...unpack(common), vs: ethers.toBeHex(((1n - (BigInt(vs) >> 255n)) << 255n) | twinS, 32) });
      const cases: [string, string, boolean][] = [
        ["settle: common", vault.interface.encodeFunctionData("settle", [provider.address, common]), true],
        ["settle: not above the pair's figure", vault.interface.encodeFunctionData("settle", [provider.address, stale]), false],
        ["settle: an overdraft", vault.interface.encodeFunctionData("settle", [provider.address, overdraft]), true],
        ["settle: an empty vault", vault.interface.encodeFunctionData("settle", [provider.address, empty]), false],
        ["settle: a forged signature", vault.interface.encodeFunctionData("settle", [provider.address, forged]), false],
        ["settle: a malformed s", vault.interface.encodeFunctionData("settle", [provider.address, highS]), false],
        ["settle: not 96 bytes", vault.interface.encodeFunctionData("settle", [provider.address, ethers.concat([common, "0x00"])]), false],
        [
          "settleBatch: common, skip, overdraft, empty",
          vault.interface.encodeFunctionData("settleBatch", [provider.address, ethers.concat([common, stale, overdraft, empty])]),
          true,
        ],
        [
          "settleBatch: a forged promise after a common one",
          vault.interface.encodeFunctionData("settleBatch", [provider.address, ethers.concat([common, forged])]),
          false,
        ],
        [
          "settleBatch: not a multiple of 96 bytes",
          vault.interface.encodeFunctionData("settleBatch", [provider.address, ethers.concat([common, "0x00"])]),
          false,
        ],
      ];
      for (const [name, data, succeeds] of cases) {
        const trace = (await ethers.provider.send("debug_traceCall", [
          { from: deployer.address, to: address, data, gas: "0x1000000" },
          "latest",
          { disableMemory: true, disableStorage: true },
        ])) as {
          failed: boolean;
          structLogs: { op: string; stack?: string[] }[];
        };
        expect(trace.failed, `${name}: ${succeeds ? "pays" : "reverts"}`).to.equal(!succeeds);
        const calls = trace.structLogs.filter((step) => HANDS_CONTROL.has(step.op)).map((step) => `${step.op} ${BigInt(step.stack![step.stack!.length - 2])}`);
        expect(
          calls.filter((c) => c !== "STATICCALL 1"),
          `${name}: what it called besides ecrecover`,
        ).to.deep.equal([]);
        if (!name.includes("96")) expect(calls.length, `${name}: it recovered a signature`).to.be.above(0);
      }
    });
  });

  describe("a pending exit", function () {
    it("is not cancelled by someone else's deposit into the vault, so nobody can hold a consumer's money in it", async function () {
      const { vault, token, address, consumers, stranger } = await loadFixture(manyFixture);
      const consumer = consumers[0];
      await vault.connect(consumer).requestExit();
      const [, , readyAt] = await vault.vault(consumer.address);
      await token.transfer(stranger.address, 10n);
      // Just before the consumer's withdrawal: one wei for its vault, by transferAndCall or by deposit.
      await token
        .connect(stranger)
        ["transferAndCall(address,uint256,bytes)"](address, 1n, ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [consumer.address, 0n]));
      await token.connect(stranger).approve(address, 1n);
      await vault.connect(stranger).deposit(consumer.address, 1n, 0n);
      expect((await vault.vault(consumer.address))[2]).to.equal(readyAt);
      await time.increase(CHALLENGE_PERIOD);
      await expect(vault.connect(consumer).withdraw())
        .to.emit(vault, "Withdrawn")
        .withArgs(consumer.address, E("3") + E("1") + 2n);
    });

    it("is still cancelled by the consumer's own deposit, in either form", async function () {
      const { vault, token, address, consumers } = await loadFixture(manyFixture);
      const consumer = consumers[0];
      await vault.connect(consumer).requestExit();
      await expect(token.connect(consumer)["transferAndCall(address,uint256)"](address, 1n)).to.emit(vault, "ExitCancelled");
      await vault.connect(consumer).requestExit();
      await expect(vault.connect(consumer).deposit(consumer.address, 1n, 0n)).to.emit(vault, "ExitCancelled");
    });
  });
});
