import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { Wallet } from "ethers";
import { vaultDomain } from "../../node/chain/eip712";
import {
  CHALLENGE_PERIOD,
  chainId,
  deployRegistry,
  newIdentity,
  pack,
  permitSignature,
  registerIdentity,
  signBeneficiaryChange,
  signPromise,
  signRelayed,
  systemFixture,
  unpack,
} from "./fixtures";

const E = ethers.parseEther;
const SECP256K1_HALF_N = BigInt("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");

/** The system with 10 MYST and 4 MYST of escrow in the consumer's vault. */
async function fundedFixture() {
  const f = await systemFixture();
  await f.vault.connect(f.consumer).deposit(f.consumer.address, E("10"), E("4"));
  const address = await f.vault.getAddress();
  return { ...f, address };
}

describe("ConsumerVault", function () {
  describe("deposit", function () {
    it("moves approved MYST into the balance and the escrow and reports both", async function () {
      const { vault, token, consumer } = await loadFixture(systemFixture);
      await expect(vault.connect(consumer).deposit(consumer.address, E("3"), E("1")))
        .to.emit(vault, "Deposited")
        .withArgs(consumer.address, E("3"), E("1"))
        .and.to.emit(token, "Transfer")
        .withArgs(consumer.address, await vault.getAddress(), E("4"));
      await expect(vault.connect(consumer).deposit(consumer.address, E("2"), 0n))
        .to.emit(vault, "Deposited")
        .withArgs(consumer.address, E("2"), 0n);
      expect(await vault.vault(consumer.address)).to.deep.equal([E("5"), E("1"), 0n]);
      expect(await token.balanceOf(await vault.getAddress())).to.equal(E("6"));
    });

    it("lets anyone fund a consumer's vault", async function () {
      const { vault, token, deployer, consumer } = await loadFixture(systemFixture);
      await token.connect(deployer).approve(await vault.getAddress(), E("1"));
      await vault.connect(deployer).deposit(consumer.address, E("1"), 0n);
      expect((await vault.vault(consumer.address))[0]).to.equal(E("1"));
    });

    it("refuses a deposit of zero", async function () {
      const { vault, consumer } = await loadFixture(systemFixture);
      await expect(vault.connect(consumer).deposit(consumer.address, 0n, 0n))
        .to.be.revertedWithCustomError(vault, "VaultZeroDeposit")
        .withArgs(consumer.address);
    });

    it("fails without an allowance, naming the missing allowance", async function () {
      const { vault, token, stranger, consumer } = await loadFixture(systemFixture);
      await expect(vault.connect(stranger).deposit(consumer.address, E("1"), 0n))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(await vault.getAddress(), 0n, E("1"));
    });

    it("refuses a balance or an escrow that does not fit 96 bits", async function () {
      const [holder] = await ethers.getSigners();
      const registry = await deployRegistry();
      const token = await ethers.deployContract("MystToken", [holder.address, 2n ** 98n]);
      const vault = await ethers.deployContract("ConsumerVault", [token, registry, CHALLENGE_PERIOD]);
      await token.approve(await vault.getAddress(), ethers.MaxUint256);
      await expect(vault.deposit(holder.address, 2n ** 96n, 0n))
        .to.be.revertedWithCustomError(vault, "SafeCastOverflowedUintDowncast")
        .withArgs(96, 2n ** 96n);
      await expect(vault.deposit(holder.address, 0n, 2n ** 96n))
        .to.be.revertedWithCustomError(vault, "SafeCastOverflowedUintDowncast")
        .withArgs(96, 2n ** 96n);
    });

    it("takes an ERC-2612 permit for exactly the deposit instead of an approval", async function () {
      const { vault, token, consumer2, consumer } = await loadFixture(systemFixture);
      await token.connect(consumer2).approve(await vault.getAddress(), 0n);
      const deadline = BigInt(await time.latest()) + 3600n;
      const sig = await permitSignature(token, consumer2, await vault.getAddress(), E("3"), deadline);
      await vault.connect(consumer2).depositWithPermit(consumer.address, E("2"), E("1"), deadline, sig.v, sig.r, sig.s);
      expect(await vault.vault(consumer.address)).to.deep.equal([E("2"), E("1"), 0n]);
      expect(await token.allowance(consumer2.address, await vault.getAddress())).to.equal(0n);
    });

    it("still deposits when a front-runner used the permit first", async function () {
      const { vault, token, consumer2, stranger } = await loadFixture(systemFixture);
      await token.connect(consumer2).approve(await vault.getAddress(), 0n);
      const deadline = BigInt(await time.latest()) + 3600n;
      const sig = await permitSignature(token, consumer2, await vault.getAddress(), E("3"), deadline);
      await token.connect(stranger).permit(consumer2.address, await vault.getAddress(), E("3"), deadline, sig.v, sig.r, sig.s);
      await vault.connect(consumer2).depositWithPermit(consumer2.address, E("3"), 0n, deadline, sig.v, sig.r, sig.s);
      expect((await vault.vault(consumer2.address))[0]).to.equal(E("3"));
    });

    it("fails with a bad permit and no allowance", async function () {
      const { vault, token, consumer2 } = await loadFixture(systemFixture);
      await token.connect(consumer2).approve(await vault.getAddress(), 0n);
      const deadline = BigInt(await time.latest()) + 3600n;
      const sig = await permitSignature(token, consumer2, await vault.getAddress(), E("1"), deadline);
      await expect(vault.connect(consumer2).depositWithPermit(consumer2.address, E("3"), 0n, deadline, sig.v, sig.r, sig.s))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(await vault.getAddress(), 0n, E("3"));
    });

    it("cancels a pending exit", async function () {
      const { vault, consumer } = await loadFixture(fundedFixture);
      await vault.connect(consumer).requestExit();
      await expect(vault.connect(consumer).deposit(consumer.address, E("1"), 0n))
        .to.emit(vault, "ExitCancelled")
        .withArgs(consumer.address);
      expect((await vault.vault(consumer.address))[2]).to.equal(0n);
    });

    describe("in one token call (ERC-1363 transferAndCall)", function () {
      const withEscrow = (consumer: string, escrow: bigint) => ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [consumer, escrow]);

      it("adds the whole transfer to the sender's own balance when it carries no data, with no allowance", async function () {
        const { vault, token, stranger, consumer } = await loadFixture(systemFixture);
        await token.transfer(stranger.address, E("5"));
        const address = await vault.getAddress();
        await expect(token.connect(stranger)["transferAndCall(address,uint256)"](address, E("5")))
          .to.emit(vault, "Deposited")
          .withArgs(stranger.address, E("5"), 0n)
          .and.to.emit(token, "Transfer")
          .withArgs(stranger.address, address, E("5"));
        expect(await token.allowance(stranger.address, address)).to.equal(0n);
        expect(await vault.vault(stranger.address)).to.deep.equal([E("5"), 0n, 0n]);
        expect(await vault.vault(consumer.address)).to.deep.equal([0n, 0n, 0n]);
        expect(await token.balanceOf(address)).to.equal(E("5"));
      });

      it("funds the vault the data names, the escrow out of the transfer", async function () {
        const { vault, token, deployer, consumer } = await loadFixture(systemFixture);
        await expect(token.connect(deployer)["transferAndCall(address,uint256,bytes)"](await vault.getAddress(), E("5"), withEscrow(consumer.address, E("2"))))
          .to.emit(vault, "Deposited")
          .withArgs(consumer.address, E("3"), E("2"));
        expect(await vault.vault(consumer.address)).to.deep.equal([E("3"), E("2"), 0n]);
        expect(await vault.vault(deployer.address)).to.deep.equal([0n, 0n, 0n]);
      });

      it("cancels a pending exit", async function () {
        const { vault, token, consumer } = await loadFixture(fundedFixture);
        await vault.connect(consumer).requestExit();
        await expect(token.connect(consumer)["transferAndCall(address,uint256)"](await vault.getAddress(), E("1")))
          .to.emit(vault, "ExitCancelled")
          .withArgs(consumer.address);
        expect(await vault.vault(consumer.address)).to.deep.equal([E("11"), E("4"), 0n]);
      });

      it("refuses data that is not (consumer, escrow), an escrow above the transfer, and nothing at all; the tokens stay put", async function () {
        const { vault, token, consumer } = await loadFixture(systemFixture);
        const address = await vault.getAddress();
        const call = (value: bigint, data: string) => token.connect(consumer)["transferAndCall(address,uint256,bytes)"](address, value, data);
        await expect(call(E("1"), "0x1234"))
          .to.be.revertedWithCustomError(vault, "DepositDataMalformed")
          .withArgs(2);
        await expect(call(E("1"), withEscrow(consumer.address, E("1.5"))))
          .to.be.revertedWithCustomError(vault, "DepositEscrowAboveValue")
          .withArgs(consumer.address, E("1.5"), E("1"));
        await expect(call(0n, "0x")).to.be.revertedWithCustomError(vault, "VaultZeroDeposit").withArgs(consumer.address);
        expect(await token.balanceOf(address)).to.equal(0n);
      });

      /** The hook as the token calls it (the vault answers it in its fallback: it is not in the vault's own ABI). */
      const hook = async (vault: { getAddress(): Promise<string> }) => ethers.getContractAt("IERC1363Receiver", await vault.getAddress());

      it("takes the hook from its token only: a direct call credits nothing", async function () {
        const { vault, stranger } = await loadFixture(systemFixture);
        await expect((await hook(vault)).connect(stranger).onTransferReceived(stranger.address, stranger.address, E("100"), "0x"))
          .to.be.revertedWithCustomError(vault, "DepositNotFromToken")
          .withArgs(stranger.address);
        expect(await vault.vault(stranger.address)).to.deep.equal([0n, 0n, 0n]);
      });

      it("answers the hook with its selector, and nothing else: another call, or ether, reverts without data as before", async function () {
        const { vault, stranger } = await loadFixture(systemFixture);
        const to = await vault.getAddress();
        const selector = (await hook(vault)).interface.getFunction("onTransferReceived").selector;
        for (const data of ["0x", "0x12", "0xdeadbeef", `0xdeadbeef${"00".repeat(160)}`])
          await expect(stranger.sendTransaction({ to, data }), data.slice(0, 12)).to.be.revertedWithoutReason();
        await expect(stranger.sendTransaction({ to, value: 1n })).to.be.revertedWithoutReason();
        // The token's own call, with ether: the hook takes none.
        const call = (await hook(vault)).interface.encodeFunctionData("onTransferReceived", [stranger.address, stranger.address, 1n, "0x"]);
        expect(call.slice(0, 10)).to.equal(selector);
        await expect(stranger.sendTransaction({ to, data: call, value: 1n })).to.be.revertedWithoutReason();
      });

      it("refuses a hook call not laid out as abi.encodeCall lays it out, without data as the ABI decoder did (and, stricter, data at another offset, which no token sends)", async function () {
        const { vault, stranger } = await loadFixture(systemFixture);
        const to = await vault.getAddress();
        const coder = ethers.AbiCoder.defaultAbiCoder();
        const selector = (await hook(vault)).interface.getFunction("onTransferReceived").selector;
        const word = (n: bigint) => n.toString(16).padStart(64, "0");
        const canonical = coder.encode(["address", "address", "uint256", "bytes"], [stranger.address, stranger.address, 1n, "0x"]).slice(2);
        const laidOut = (from: string, offset: bigint, length: bigint, tail = "") =>
          `${selector}${canonical.slice(0, 64)}${from}${word(1n)}${word(offset)}${word(length)}${tail}`;
        const from = canonical.slice(64, 128);
        // The well-formed call from a stranger is refused for who sent it: the layouts below are refused before that, for their shape.
        await expect(stranger.sendTransaction({ to, data: laidOut(from, 0x80n, 0n) }))
          .to.be.revertedWithCustomError(vault, "DepositNotFromToken")
          .withArgs(stranger.address);
        for (const [name, data] of [
          ["a from with bits above its 160", laidOut(`01${from.slice(2)}`, 0x80n, 0n)],
          ["data at another offset", laidOut(from, 0xa0n, 0n, word(0n))],
          ["data longer than the call", laidOut(from, 0x80n, 64n, word(1n))],
          ["a length that wraps around", laidOut(from, 0x80n, 2n ** 256n - 1n)],
          ["no length at all", laidOut(from, 0x80n, 0n).slice(0, -64)],
        ])
          await expect(stranger.sendTransaction({ to, data }), name).to.be.revertedWithoutReason();
        expect(await vault.vault(stranger.address)).to.deep.equal([0n, 0n, 0n]);
      });

      it("refuses a balance that does not fit 96 bits", async function () {
        const [holder] = await ethers.getSigners();
        const registry = await deployRegistry();
        const token = await ethers.deployContract("MystToken", [holder.address, 2n ** 98n]);
        const vault = await ethers.deployContract("ConsumerVault", [token, registry, CHALLENGE_PERIOD]);
        await expect(token["transferAndCall(address,uint256)"](await vault.getAddress(), 2n ** 96n))
          .to.be.revertedWithCustomError(vault, "SafeCastOverflowedUintDowncast")
          .withArgs(96, 2n ** 96n);
      });
    });
  });

  describe("settle", function () {
    it("credits the increase of the pair's promise to the provider", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      await expect(vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("1"))))
        .to.emit(vault, "PromiseSettled")
        .withArgs(consumer.address, provider.address, E("1"), E("1"));
      await expect(vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("2.5"))))
        .to.emit(vault, "PromiseSettled")
        .withArgs(consumer.address, provider.address, E("1.5"), E("2.5"));
      expect(await vault.vault(consumer.address)).to.deep.equal([E("7.5"), E("4"), 0n]);
      expect(await vault.settled(consumer.address, provider.address)).to.equal(E("2.5"));
      expect(await vault.earnings(provider.address)).to.equal(E("2.5"));
    });

    it("pays a second provider from the same deposit, with no transaction of the consumer's", async function () {
      const { vault, consumer, provider, provider2, address } = await loadFixture(fundedFixture);
      await vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("3")));
      await vault.settle(provider2.address, await signPromise(consumer, address, provider2.address, E("2")));
      expect(await vault.earnings(provider.address)).to.equal(E("3"));
      expect(await vault.earnings(provider2.address)).to.equal(E("2"));
      expect((await vault.vault(consumer.address))[0]).to.equal(E("5"));
    });

    it("refuses a promise not above what the pair settled", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      const p = await signPromise(consumer, address, provider.address, E("1"));
      await vault.settle(provider.address, p);
      await expect(vault.settle(provider.address, p))
        .to.be.revertedWithCustomError(vault, "PromiseNotAboveSettled")
        .withArgs(consumer.address, provider.address, E("1"), E("1"));
      await expect(vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("0.5"))))
        .to.be.revertedWithCustomError(vault, "PromiseNotAboveSettled")
        .withArgs(consumer.address, provider.address, E("0.5"), E("1"));
    });

    it("refuses a promise the named consumer did not sign", async function () {
      const { vault, consumer, consumer2, provider, address } = await loadFixture(fundedFixture);
      const forged = await signPromise(consumer2, address, provider.address, E("1"));
      await expect(vault.settle(provider.address, pack({ ...unpack(forged), consumer: consumer.address })))
        .to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid")
        .withArgs(consumer.address, (addr: string) => addr !== consumer.address);
    });

    it("refuses a high-s signature as malformed", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      const p = await signPromise(consumer, address, provider.address, E("1"));
      await expect(vault.settle(provider.address, pack({ ...unpack(p), vs: ethers.toBeHex(SECP256K1_HALF_N + 1n, 32) })))
        .to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid")
        .withArgs(consumer.address, ethers.ZeroAddress);
    });

    it("refuses a signature that recovers no key, even for a promise that names the zero address", async function () {
      const { vault, token, provider, deployer } = await loadFixture(fundedFixture);
      // Anyone may fund any vault, the zero address's too: only a signature may spend it.
      await token.connect(deployer).approve(await vault.getAddress(), E("1"));
      await vault.connect(deployer).deposit(ethers.ZeroAddress, E("1"), 0n);
      const garbage = pack({ consumer: ethers.ZeroAddress, amount: E("1"), r: ethers.ZeroHash, vs: ethers.ZeroHash });
      await expect(vault.settle(provider.address, garbage))
        .to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid")
        .withArgs(ethers.ZeroAddress, ethers.ZeroAddress);
      expect((await vault.vault(ethers.ZeroAddress))[0]).to.equal(E("1"));
    });

    it("refuses anything but one packed promise of 96 bytes", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      const p = await signPromise(consumer, address, provider.address, E("1"));
      await expect(vault.settle(provider.address, ethers.dataSlice(p, 0, 95)))
        .to.be.revertedWithCustomError(vault, "PromisesMalformed")
        .withArgs(95);
      await expect(vault.settle(provider.address, ethers.concat([p, p])))
        .to.be.revertedWithCustomError(vault, "PromisesMalformed")
        .withArgs(192);
      await expect(vault.settle(provider.address, "0x")).to.be.revertedWithCustomError(vault, "PromisesMalformed").withArgs(0);
    });

    describe("replay", function () {
      it("does not pay a promise signed for another chain", async function () {
        const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
        const p = await signPromise(consumer, address, provider.address, E("1"), vaultDomain((await chainId()) + 1n, address));
        await expect(vault.settle(provider.address, p)).to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid");
      });

      it("does not pay a promise signed for another vault contract", async function () {
        const { vault, token, registry, consumer, provider, address } = await loadFixture(fundedFixture);
        const other = await ethers.deployContract("ConsumerVault", [token, registry, CHALLENGE_PERIOD]);
        const p = await signPromise(consumer, await other.getAddress(), provider.address, E("1"));
        await expect(vault.settle(provider.address, p)).to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid");
        expect(await vault.domainSeparator()).to.not.equal(await other.domainSeparator());
        expect(address).to.not.equal(await other.getAddress());
      });

      it("does not pay one consumer's promise from another consumer's vault", async function () {
        const { vault, consumer, consumer2, provider, address } = await loadFixture(fundedFixture);
        await vault.connect(consumer2).deposit(consumer2.address, E("10"), 0n);
        const p = await signPromise(consumer, address, provider.address, E("1"));
        await expect(vault.settle(provider.address, pack({ ...unpack(p), consumer: consumer2.address }))).to.be.revertedWithCustomError(
          vault,
          "PromiseSignatureInvalid",
        );
      });

      it("does not pay one provider's promise to another provider", async function () {
        const { vault, consumer, provider, provider2, address } = await loadFixture(fundedFixture);
        const p = await signPromise(consumer, address, provider.address, E("1"));
        await expect(vault.settle(provider2.address, p)).to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid");
      });
    });

    describe("when the vault cannot cover a promise (overdraft)", function () {
      it("pays the balance and the shortfall from the escrow, and forfeits the rest of the escrow", async function () {
        const { vault, token, consumer, consumer2, provider } = await loadFixture(systemFixture);
        const address = await vault.getAddress();
        await vault.connect(consumer).deposit(consumer.address, E("10"), E("10"));
        await expect(vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("12"))))
          .to.emit(vault, "EscrowForfeited")
          .withArgs(consumer.address, provider.address, E("2"), E("8"))
          .and.to.emit(vault, "PromiseSettled")
          .withArgs(consumer.address, provider.address, E("12"), E("12"));
        expect(await vault.vault(consumer.address)).to.deep.equal([0n, 0n, 0n]);
        // The forfeited 8 MYST stay locked: the contract holds them beside the 12 credited and a new 1.
        await vault.connect(consumer2).deposit(consumer2.address, E("1"), 0n);
        expect(await vault.earnings(provider.address)).to.equal(E("12"));
        expect(await token.balanceOf(address)).to.equal(E("21"));
      });

      it("pays a double spend across two providers: the first from the balance, the second from the escrow", async function () {
        const { vault, consumer, provider, provider2, address } = await loadFixture(fundedFixture);
        // 10 MYST of balance and 4 of escrow; the consumer promised 10 to each of two providers.
        const p1 = await signPromise(consumer, address, provider.address, E("10"));
        const p2 = await signPromise(consumer, address, provider2.address, E("10"));
        await vault.settle(provider.address, p1);
        await expect(vault.settle(provider2.address, p2))
          .to.emit(vault, "EscrowForfeited")
          .withArgs(consumer.address, provider2.address, E("2"), E("2"))
          .and.to.emit(vault, "PromiseSettled")
          .withArgs(consumer.address, provider2.address, E("2"), E("2"));
        expect(await vault.earnings(provider.address)).to.equal(E("10"));
        expect(await vault.earnings(provider2.address)).to.equal(E("2"));
        expect(await vault.vault(consumer.address)).to.deep.equal([0n, 0n, 0n]);
      });

      it("keeps the rest of an overdrawn promise settleable after a top-up", async function () {
        const { vault, consumer, provider2, address } = await loadFixture(fundedFixture);
        const p = await signPromise(consumer, address, provider2.address, E("20"));
        await vault.settle(provider2.address, p); // 10 + 2 of the escrow
        await expect(vault.settle(provider2.address, p)).to.be.revertedWithCustomError(vault, "VaultEmpty").withArgs(consumer.address, E("8"));
        await vault.connect(consumer).deposit(consumer.address, E("30"), 0n);
        await expect(vault.settle(provider2.address, p)).to.emit(vault, "PromiseSettled").withArgs(consumer.address, provider2.address, E("8"), E("20"));
      });

      it("keeps a pending exit's time when the escrow is forfeited", async function () {
        const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
        await vault.connect(consumer).requestExit();
        const readyAt = (await vault.vault(consumer.address))[2];
        await vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("11")));
        expect(await vault.vault(consumer.address)).to.deep.equal([0n, 0n, readyAt]);
      });
    });
  });

  describe("settleBatch", function () {
    it("settles promises of many consumers in one transaction and credits the provider once", async function () {
      const { vault, consumer, consumer2, provider, address } = await loadFixture(fundedFixture);
      await vault.connect(consumer2).deposit(consumer2.address, E("5"), 0n);
      const batch = [await signPromise(consumer, address, provider.address, E("1")), await signPromise(consumer2, address, provider.address, E("2"))];
      await expect(vault.settleBatch(provider.address, ethers.concat(batch)))
        .to.emit(vault, "PromiseSettled")
        .withArgs(consumer.address, provider.address, E("1"), E("1"))
        .and.to.emit(vault, "PromiseSettled")
        .withArgs(consumer2.address, provider.address, E("2"), E("2"));
      expect(await vault.earnings(provider.address)).to.equal(E("3"));
    });

    it("skips promises that pay nothing (already settled, empty vault) and settles the rest", async function () {
      const { vault, consumer, consumer2, provider, address } = await loadFixture(fundedFixture);
      const settled = await signPromise(consumer, address, provider.address, E("1"));
      await vault.settle(provider.address, settled);
      const empty = await signPromise(consumer2, address, provider.address, E("1"));
      const fresh = await signPromise(consumer, address, provider.address, E("3"));
      await vault.settleBatch(provider.address, ethers.concat([settled, empty, fresh]));
      expect(await vault.earnings(provider.address)).to.equal(E("3"));
      expect(await vault.settled(consumer2.address, provider.address)).to.equal(0n);
    });

    it("settles an overdraft, a skip and a high-s promise inside a batch as alone, and the promises around them as usual", async function () {
      const { vault, token, consumer, consumer2, provider, provider2, address, deployer } = await loadFixture(fundedFixture);
      const third = await newIdentity();
      await vault.connect(consumer2).deposit(consumer2.address, E("5"), E("2"));
      await token.connect(deployer).approve(address, E("5"));
      await vault.connect(deployer).deposit(third.address, E("5"), 0n);
      await vault.settle(provider.address, await signPromise(third, address, provider.address, E("1")));
      const before = await signPromise(consumer, address, provider.address, E("2"));
      const overdraft = await signPromise(consumer2, address, provider.address, E("6")); // 5 of balance + 1 of the escrow
      const stale = await signPromise(third, address, provider.address, E("1")); // already settled: pays nothing
      const after = await signPromise(third, address, provider.address, E("3"));
      await expect(vault.settleBatch(provider.address, ethers.concat([before, overdraft, stale, after])))
        .to.emit(vault, "PromiseSettled")
        .withArgs(consumer.address, provider.address, E("2"), E("2"))
        .and.to.emit(vault, "EscrowForfeited")
        .withArgs(consumer2.address, provider.address, E("1"), E("1"))
        .and.to.emit(vault, "PromiseSettled")
        .withArgs(consumer2.address, provider.address, E("6"), E("6"))
        .and.to.emit(vault, "PromiseSettled")
        .withArgs(third.address, provider.address, E("2"), E("3"));
      expect(await vault.earnings(provider.address)).to.equal(E("11")); // 1 before + 2 + 6 + 2
      expect(await vault.vault(consumer.address)).to.deep.equal([E("8"), E("4"), 0n]);
      expect(await vault.vault(consumer2.address)).to.deep.equal([0n, 0n, 0n]);
      expect(await vault.vault(third.address)).to.deep.equal([E("2"), 0n, 0n]);
      const highS = pack({ ...unpack(await signPromise(consumer, address, provider2.address, E("1"))), vs: ethers.toBeHex(SECP256K1_HALF_N + 1n, 32) });
      await expect(vault.settleBatch(provider2.address, ethers.concat([await signPromise(third, address, provider2.address, E("1")), highS])))
        .to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid")
        .withArgs(consumer.address, ethers.ZeroAddress);
    });

    it("credits nothing for an empty batch or one whose promises all pay nothing", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      await vault.settleBatch(provider.address, "0x");
      const p = await signPromise(consumer, address, provider.address, E("1"));
      await vault.settle(provider.address, p);
      await expect(vault.settleBatch(provider.address, ethers.concat([p, p]))).to.not.emit(vault, "PromiseSettled");
      expect(await vault.earnings(provider.address)).to.equal(E("1"));
    });

    it("refuses packed promises whose length is not a multiple of 96 bytes", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      const p = await signPromise(consumer, address, provider.address, E("1"));
      await expect(vault.settleBatch(provider.address, ethers.concat([p, "0x00"])))
        .to.be.revertedWithCustomError(vault, "PromisesMalformed")
        .withArgs(97);
      expect(await vault.earnings(provider.address)).to.equal(0n);
    });

    it("reverts the whole batch on a forged promise", async function () {
      const { vault, consumer, consumer2, provider, address } = await loadFixture(fundedFixture);
      const good = await signPromise(consumer, address, provider.address, E("1"));
      const forged = await signPromise(consumer2, address, provider.address, E("1"));
      await expect(vault.settleBatch(provider.address, ethers.concat([good, pack({ ...unpack(forged), consumer: consumer.address })])))
        .to.be.revertedWithCustomError(vault, "PromiseSignatureInvalid")
        .withArgs(consumer.address, (recovered: string) => recovered !== consumer.address);
      expect(await vault.earnings(provider.address)).to.equal(0n);
    });
  });

  describe("relayed settlement", function () {
    /** A provider with no ETH at all, registered by a relayer. */
    async function relayFixture() {
      const f = await fundedFixture();
      const poor = new Wallet(Wallet.createRandom().privateKey, ethers.provider);
      await registerIdentity(f.registry.connect(f.relayer), poor as unknown as Wallet);
      await f.vault.connect(f.consumer2).deposit(f.consumer2.address, E("5"), 0n);
      const signed = [await signPromise(f.consumer, f.address, poor.address, E("2")), await signPromise(f.consumer2, f.address, poor.address, E("1"))];
      const claims = signed.map((p) => unpack(p));
      const promises = ethers.concat(signed);
      return { ...f, poor, promises, claims };
    }

    it("pays the relayer its fee out of the amount and the provider, which has no ETH, the rest", async function () {
      const { vault, token, relayer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("0.1"), 0n);
      const before = await token.balanceOf(relayer.address);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.05"), 0n, sig))
        .to.emit(vault, "SettlementRelayed")
        .withArgs(poor.address, relayer.address, E("0.05"), 0n)
        .and.to.emit(vault, "EarningsPaid")
        .withArgs(poor.address, poor.address, E("2.95"));
      expect(await token.balanceOf(relayer.address)).to.equal(before + E("0.05"));
      expect(await token.balanceOf(poor.address)).to.equal(E("2.95"));
      expect(await ethers.provider.getBalance(poor.address)).to.equal(0n);
      expect(await vault.earnings(poor.address)).to.equal(0n);
      expect(await vault.relayNonce(poor.address)).to.equal(1n);
    });

    it("pays earnings credited before and honours the provider's beneficiary", async function () {
      const { vault, token, relayer, registry, stranger, consumer, poor, promises, claims, address } = await loadFixture(relayFixture);
      await registry.setBeneficiary(
        poor.address,
        stranger.address,
        0n,
        await signBeneficiaryChange(poor as unknown as Wallet, await registry.getAddress(), stranger.address, 0n),
      );
      await vault.settle(poor.address, await signPromise(consumer, address, poor.address, E("1")));
      const before = await token.balanceOf(stranger.address);
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, 0n, 0n);
      await vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, 0n, 0n, 0n, sig);
      expect(await token.balanceOf(stranger.address)).to.equal(before + E("3"));
    });

    it("refuses a fee above the cap the provider signed", async function () {
      const { vault, relayer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("0.1"), 0n);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.2"), 0n, sig))
        .to.be.revertedWithCustomError(vault, "RelayFeeAboveCap")
        .withArgs(poor.address, E("0.2"), E("0.1"));
    });

    it("refuses a fee above what the promises paid", async function () {
      const { vault, relayer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("5"), 0n);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("5"), E("4"), 0n, sig))
        .to.be.revertedWithCustomError(vault, "RelayFeeAboveAmount")
        .withArgs(poor.address, E("4"), E("3"));
    });

    it("cannot be replayed: the provider's nonce moved", async function () {
      const { vault, relayer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("0.1"), 0n);
      await vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.1"), 0n, sig);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.1"), 0n, sig))
        .to.be.revertedWithCustomError(vault, "RelayNonceInvalid")
        .withArgs(poor.address, 1n, 0n);
    });

    it("refuses a batch the provider did not sign, or whose claims were changed", async function () {
      const { vault, relayer, stranger, consumer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const wrongSigner = await signRelayed(consumer, address, relayer.address, claims, E("0.1"), 0n);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), 0n, 0n, wrongSigner))
        .to.be.revertedWithCustomError(vault, "RelaySignatureInvalid")
        .withArgs(poor.address, (recovered: string) => recovered !== poor.address);
      const sig = await signRelayed(poor as unknown as Wallet, address, stranger.address, claims.slice(0, 1), E("0.1"), 0n);
      await expect(vault.connect(stranger).settleRelayed(poor.address, stranger.address, promises, E("0.1"), 0n, 0n, sig)).to.be.revertedWithCustomError(
        vault,
        "RelaySignatureInvalid",
      );
      await expect(vault.connect(stranger).settleRelayed(poor.address, stranger.address, promises, E("0.1"), 0n, 0n, "0x1234"))
        .to.be.revertedWithCustomError(vault, "RelaySignatureInvalid")
        .withArgs(poor.address, ethers.ZeroAddress);
    });

    describe("when another account copies the relayer's pending call (a front-run)", function () {
      it("refuses the copy, naming the chosen relayer and the sender, and the relayer's own call still pays it", async function () {
        const { vault, token, relayer, stranger, poor, promises, claims, address } = await loadFixture(relayFixture);
        const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("0.1"), 0n);
        const strangerBefore = await token.balanceOf(stranger.address);
        await expect(vault.connect(stranger).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.1"), 0n, sig))
          .to.be.revertedWithCustomError(vault, "RelayerNotChosen")
          .withArgs(poor.address, relayer.address, stranger.address);
        expect(await token.balanceOf(stranger.address)).to.equal(strangerBefore);
        const relayerBefore = await token.balanceOf(relayer.address);
        await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("0.1"), E("0.1"), 0n, sig))
          .to.emit(vault, "SettlementRelayed")
          .withArgs(poor.address, relayer.address, E("0.1"), 0n);
        expect(await token.balanceOf(relayer.address)).to.equal(relayerBefore + E("0.1"));
      });

      it("refuses the copy that names its own sender as the relayer: the provider did not sign that", async function () {
        const { vault, relayer, stranger, poor, promises, claims, address } = await loadFixture(relayFixture);
        const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, claims, E("0.1"), 0n);
        await expect(vault.connect(stranger).settleRelayed(poor.address, stranger.address, promises, E("0.1"), E("0.1"), 0n, sig))
          .to.be.revertedWithCustomError(vault, "RelaySignatureInvalid")
          .withArgs(poor.address, (recovered: string) => recovered !== poor.address);
        expect(await vault.relayNonce(poor.address)).to.equal(0n);
      });
    });

    it("refuses packed promises whose length is not a multiple of 96 bytes", async function () {
      const { vault, relayer, poor, promises, claims, address } = await loadFixture(relayFixture);
      const sig = await signRelayed(poor, address, relayer.address, claims, E("0.1"), 0n);
      await expect(vault.connect(relayer).settleRelayed(poor.address, relayer.address, ethers.dataSlice(promises, 1), E("0.1"), 0n, 0n, sig))
        .to.be.revertedWithCustomError(vault, "PromisesMalformed")
        .withArgs(191);
    });

    it("moves no token when the whole amount is the fee and nothing was credited", async function () {
      const { vault, token, relayer, consumer, poor, address } = await loadFixture(relayFixture);
      const promises = await signPromise(consumer, address, poor.address, E("1"));
      const sig = await signRelayed(poor as unknown as Wallet, address, relayer.address, [{ consumer: consumer.address, amount: E("1") }], E("1"), 0n);
      await vault.connect(relayer).settleRelayed(poor.address, relayer.address, promises, E("1"), E("1"), 0n, sig);
      expect(await token.balanceOf(poor.address)).to.equal(0n);
    });
  });

  describe("withdrawEarnings", function () {
    it("pays the provider's credited earnings to its beneficiary, whoever asks", async function () {
      const { vault, token, stranger, consumer, provider, address } = await loadFixture(fundedFixture);
      await vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("2")));
      await expect(vault.connect(stranger).withdrawEarnings(provider.address))
        .to.emit(vault, "EarningsPaid")
        .withArgs(provider.address, provider.address, E("2"));
      expect(await token.balanceOf(provider.address)).to.equal(E("2"));
      expect(await vault.earnings(provider.address)).to.equal(0n);
    });

    it("refuses when nothing was earned", async function () {
      const { vault, provider } = await loadFixture(fundedFixture);
      await expect(vault.withdrawEarnings(provider.address)).to.be.revertedWithCustomError(vault, "NoEarnings").withArgs(provider.address);
    });
  });

  describe("exit", function () {
    it("returns balance and escrow after the challenge period", async function () {
      const { vault, token, consumer } = await loadFixture(fundedFixture);
      await expect(vault.connect(consumer).requestExit()).to.emit(vault, "ExitRequested");
      const readyAt = (await vault.vault(consumer.address))[2];
      expect(readyAt).to.equal(BigInt(await time.latest()) + CHALLENGE_PERIOD);
      await expect(vault.connect(consumer).withdraw()).to.be.revertedWithCustomError(vault, "ExitNotReady");
      await time.increaseTo(readyAt);
      const before = await token.balanceOf(consumer.address);
      await expect(vault.connect(consumer).withdraw()).to.emit(vault, "Withdrawn").withArgs(consumer.address, E("14"));
      expect(await token.balanceOf(consumer.address)).to.equal(before + E("14"));
      expect(await vault.vault(consumer.address)).to.deep.equal([0n, 0n, 0n]);
    });

    it("settles promises signed before the request during the challenge period, then returns the rest", async function () {
      const { vault, consumer, provider, provider2, address } = await loadFixture(fundedFixture);
      const p1 = await signPromise(consumer, address, provider.address, E("3"));
      const p2 = await signPromise(consumer, address, provider2.address, E("2"));
      await vault.connect(consumer).requestExit();
      await vault.settle(provider.address, p1);
      await time.increase(CHALLENGE_PERIOD - 10n);
      await vault.settle(provider2.address, p2);
      await time.increase(10n);
      await expect(vault.connect(consumer).withdraw()).to.emit(vault, "Withdrawn").withArgs(consumer.address, E("9"));
    });

    it("pays nothing to a promise presented after the withdrawal", async function () {
      const { vault, consumer, provider, address } = await loadFixture(fundedFixture);
      const late = await signPromise(consumer, address, provider.address, E("1"));
      await vault.connect(consumer).requestExit();
      await time.increase(CHALLENGE_PERIOD);
      await vault.connect(consumer).withdraw();
      await expect(vault.settle(provider.address, late)).to.be.revertedWithCustomError(vault, "VaultEmpty").withArgs(consumer.address, E("1"));
    });

    it("refuses a withdrawal or a cancellation without a request", async function () {
      const { vault, consumer } = await loadFixture(fundedFixture);
      await expect(vault.connect(consumer).withdraw()).to.be.revertedWithCustomError(vault, "ExitNotRequested").withArgs(consumer.address);
      await expect(vault.connect(consumer).cancelExit()).to.be.revertedWithCustomError(vault, "ExitNotRequested").withArgs(consumer.address);
    });

    it("can be cancelled", async function () {
      const { vault, consumer } = await loadFixture(fundedFixture);
      await vault.connect(consumer).requestExit();
      await expect(vault.connect(consumer).cancelExit()).to.emit(vault, "ExitCancelled").withArgs(consumer.address);
      expect((await vault.vault(consumer.address))[2]).to.equal(0n);
    });
  });

  describe("wiring", function () {
    it("names its token, registry and challenge period", async function () {
      const { vault, token, registry } = await loadFixture(systemFixture);
      expect(await vault.token()).to.equal(await token.getAddress());
      expect(await vault.registry()).to.equal(await registry.getAddress());
      expect(await vault.challengePeriod()).to.equal(CHALLENGE_PERIOD);
    });
  });

  describe("with a hostile token", function () {
    async function hostileFixture() {
      const [deployer] = await ethers.getSigners();
      const registry = await deployRegistry();
      const reentrant = await ethers.deployContract("ReentrantToken");
      const liar = await ethers.deployContract("FalseToken");
      const consumer = await newIdentity();
      const provider = await newIdentity();
      await registerIdentity(registry, provider);
      const vaults = [];
      for (const token of [reentrant, liar]) {
        const vault = await ethers.deployContract("ConsumerVault", [token, registry, CHALLENGE_PERIOD]);
        await token.mint(consumer.address, E("100"));
        await token.connect(consumer).approve(await vault.getAddress(), ethers.MaxUint256);
        await vault.connect(consumer).deposit(consumer.address, E("10"), E("2"));
        vaults.push(vault);
      }
      return { deployer, registry, reentrant, liar, reentrantVault: vaults[0], liarVault: vaults[1], consumer, provider };
    }

    it("refuses a re-entry from the token during a withdrawal: the vault is paid out once", async function () {
      const { reentrant, reentrantVault: vault, consumer } = await loadFixture(hostileFixture);
      await vault.connect(consumer).requestExit();
      await time.increase(CHALLENGE_PERIOD);
      await reentrant.arm(await vault.getAddress(), vault.interface.encodeFunctionData("withdraw"));
      await vault.connect(consumer).withdraw();
      expect(await reentrant.attempted()).to.equal(true);
      expect(await reentrant.reentrySucceeded()).to.equal(false);
      expect(vault.interface.parseError(await reentrant.reentryError())?.name).to.equal("ReentrancyGuardReentrantCall");
      expect(await reentrant.balanceOf(await vault.getAddress())).to.equal(0n);
    });

    it("refuses a re-entry from the token while paying earnings", async function () {
      const { reentrant, reentrantVault: vault, consumer, provider } = await loadFixture(hostileFixture);
      const address = await vault.getAddress();
      await vault.settle(provider.address, await signPromise(consumer, address, provider.address, E("1")));
      await reentrant.arm(address, vault.interface.encodeFunctionData("withdrawEarnings", [provider.address]));
      await vault.withdrawEarnings(provider.address);
      expect(await reentrant.reentrySucceeded()).to.equal(false);
      expect(await reentrant.balanceOf(provider.address)).to.equal(E("1"));
    });

    it("refuses a re-entry from the token during a deposit", async function () {
      const { reentrant, reentrantVault: vault, consumer } = await loadFixture(hostileFixture);
      await reentrant.arm(await vault.getAddress(), vault.interface.encodeFunctionData("deposit", [consumer.address, E("1"), 0n]));
      await vault.connect(consumer).deposit(consumer.address, E("1"), 0n);
      expect(await reentrant.reentrySucceeded()).to.equal(false);
      expect((await vault.vault(consumer.address))[0]).to.equal(E("11"));
    });

    it("refuses every other way in while the token holds control", async function () {
      const { reentrant, reentrantVault: vault, consumer, provider } = await loadFixture(hostileFixture);
      const address = await vault.getAddress();
      const p = await signPromise(consumer, address, provider.address, E("1"));
      const payloads = [
        vault.interface.encodeFunctionData("depositWithPermit", [consumer.address, E("1"), 0n, 0n, 27, ethers.ZeroHash, ethers.ZeroHash]),
        vault.interface.encodeFunctionData("settle", [provider.address, p]),
        vault.interface.encodeFunctionData("settleBatch", [provider.address, p]),
        vault.interface.encodeFunctionData("settleRelayed", [provider.address, ethers.ZeroAddress, p, 0n, 0n, 0n, "0x"]),
      ];
      for (const payload of payloads) {
        await reentrant.arm(address, payload);
        await vault.connect(consumer).deposit(consumer.address, E("1"), 0n);
        expect(await reentrant.reentrySucceeded()).to.equal(false);
        expect(vault.interface.parseError(await reentrant.reentryError())?.name).to.equal("ReentrancyGuardReentrantCall");
      }
      expect(await vault.settled(consumer.address, provider.address)).to.equal(0n);
    });

    it("reverts, keeping the vault, when the token reports a failed transfer", async function () {
      const { liar, liarVault: vault, consumer } = await loadFixture(hostileFixture);
      await vault.connect(consumer).requestExit();
      await time.increase(CHALLENGE_PERIOD);
      await liar.setLie(true);
      await expect(vault.connect(consumer).withdraw())
        .to.be.revertedWithCustomError(vault, "SafeERC20FailedOperation")
        .withArgs(await liar.getAddress());
      await expect(vault.connect(consumer).deposit(consumer.address, E("1"), 0n)).to.be.revertedWithCustomError(vault, "SafeERC20FailedOperation");
      expect((await vault.vault(consumer.address))[0]).to.equal(E("10"));
    });
  });
});
