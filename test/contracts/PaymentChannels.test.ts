import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { TypedDataEncoder } from "ethers";
import { channelIdOf, channelsDomain } from "../../node/chain/eip712";
import {
  CHALLENGE_PERIOD,
  chainId,
  deployRegistry,
  malleate,
  newIdentity,
  registerIdentity,
  signBeneficiaryChange,
  permitSignature,
  signPromise,
  systemFixture,
} from "./fixtures";

const E = ethers.parseEther;

/** The system with 10 MYST in the consumer's channel to the provider. */
async function fundedFixture() {
  const f = await systemFixture();
  await f.channels.connect(f.consumer).deposit(f.consumer.address, f.provider.address, E("10"));
  const id = channelIdOf(f.consumer.address, f.provider.address);
  const address = await f.channels.getAddress();
  return { ...f, id, address };
}

describe("PaymentChannels", function () {
  describe("deposit", function () {
    it("moves approved MYST into the channel and reports the new balance", async function () {
      const { channels, token, consumer, provider } = await loadFixture(systemFixture);
      const id = channelIdOf(consumer.address, provider.address);
      await expect(channels.connect(consumer).deposit(consumer.address, provider.address, E("3")))
        .to.emit(channels, "ChannelDeposited")
        .withArgs(id, consumer.address, provider.address, consumer.address, E("3"), E("3"));
      await expect(channels.connect(consumer).deposit(consumer.address, provider.address, E("2")))
        .to.emit(channels, "ChannelDeposited")
        .withArgs(id, consumer.address, provider.address, consumer.address, E("2"), E("5"));
      expect(await channels.channel(id)).to.deep.equal([E("5"), 0n, 0n]);
      expect(await token.balanceOf(await channels.getAddress())).to.equal(E("5"));
    });

    it("lets anyone fund a consumer's channel", async function () {
      const { channels, token, deployer, consumer, provider } = await loadFixture(systemFixture);
      await token.connect(deployer).approve(await channels.getAddress(), E("1"));
      await channels.connect(deployer).deposit(consumer.address, provider.address, E("1"));
      expect((await channels.channel(channelIdOf(consumer.address, provider.address)))[0]).to.equal(E("1"));
    });

    it("refuses a channel with an unregistered consumer or provider", async function () {
      const { channels, consumer, provider } = await loadFixture(systemFixture);
      const stranger = await newIdentity();
      await expect(channels.connect(consumer).deposit(stranger.address, provider.address, E("1")))
        .to.be.revertedWithCustomError(channels, "ChannelPartyNotRegistered")
        .withArgs(stranger.address);
      await expect(channels.connect(consumer).deposit(consumer.address, stranger.address, E("1")))
        .to.be.revertedWithCustomError(channels, "ChannelPartyNotRegistered")
        .withArgs(stranger.address);
    });

    it("refuses a deposit of zero", async function () {
      const { channels, consumer, provider } = await loadFixture(systemFixture);
      await expect(channels.connect(consumer).deposit(consumer.address, provider.address, 0n))
        .to.be.revertedWithCustomError(channels, "ChannelZeroDeposit")
        .withArgs(channelIdOf(consumer.address, provider.address));
    });

    it("fails without an allowance, naming the missing allowance", async function () {
      const { channels, token, stranger, consumer, provider } = await loadFixture(systemFixture);
      await expect(channels.connect(stranger).deposit(consumer.address, provider.address, E("1")))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(await channels.getAddress(), 0n, E("1"));
    });

    it("refuses a balance that does not fit the channel's 96 bits", async function () {
      const [holder] = await ethers.getSigners();
      const registry = await deployRegistry();
      const token = await ethers.deployContract("MystToken", [holder.address, 2n ** 97n]);
      const channels = await ethers.deployContract("PaymentChannels", [token, registry, CHALLENGE_PERIOD]);
      const consumer = await newIdentity();
      const provider = await newIdentity();
      await registerIdentity(registry, consumer);
      await registerIdentity(registry, provider);
      await token.approve(await channels.getAddress(), ethers.MaxUint256);
      await channels.deposit(consumer.address, provider.address, 2n ** 96n - 1n);
      await expect(channels.deposit(consumer.address, provider.address, 1n))
        .to.be.revertedWithCustomError(channels, "SafeCastOverflowedUintDowncast")
        .withArgs(96, 2n ** 96n);
    });

    it("cancels a pending withdrawal when the consumer tops up", async function () {
      const { channels, consumer, provider, id } = await loadFixture(fundedFixture);
      await channels.connect(consumer).requestWithdrawal(provider.address);
      await expect(channels.connect(consumer).deposit(consumer.address, provider.address, E("1")))
        .to.emit(channels, "WithdrawalCancelled")
        .withArgs(id);
      expect(await channels.channel(id)).to.deep.equal([E("11"), 0n, 0n]);
    });

    describe("with a permit", function () {
      /** A funder holding 4 MYST, without any allowance, and a deadline 10 minutes away. */
      async function permitFixture() {
        const f = await systemFixture();
        const funder = await newIdentity();
        await f.token.connect(f.deployer).transfer(funder.address, E("4"));
        return { ...f, funder, deadline: BigInt(await time.latest()) + 600n, spender: await f.channels.getAddress() };
      }

      it("deposits without a prior approval", async function () {
        const { channels, token, consumer, provider, funder, deadline, spender } = await loadFixture(permitFixture);
        const sig = await permitSignature(token, funder, spender, E("4"), deadline);
        await channels.connect(funder).depositWithPermit(consumer.address, provider.address, E("4"), deadline, sig.v, sig.r, sig.s);
        expect((await channels.channel(channelIdOf(consumer.address, provider.address)))[0]).to.equal(E("4"));
        expect(await token.balanceOf(funder.address)).to.equal(0n);
      });

      it("still deposits when a front-runner used the permit first", async function () {
        const { channels, token, stranger, consumer, provider, funder, deadline, spender } = await loadFixture(permitFixture);
        const sig = await permitSignature(token, funder, spender, E("4"), deadline);
        await token.connect(stranger).permit(funder.address, spender, E("4"), deadline, sig.v, sig.r, sig.s);
        await channels.connect(funder).depositWithPermit(consumer.address, provider.address, E("4"), deadline, sig.v, sig.r, sig.s);
        expect((await channels.channel(channelIdOf(consumer.address, provider.address)))[0]).to.equal(E("4"));
      });

      it("fails with a bad permit and no allowance", async function () {
        const { channels, token, consumer, provider, funder, deadline, spender } = await loadFixture(permitFixture);
        const sig = await permitSignature(token, funder, spender, E("1"), deadline);
        await expect(
          channels.connect(funder).depositWithPermit(consumer.address, provider.address, E("4"), deadline, sig.v, sig.r, sig.s),
        ).to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance");
      });
    });
  });

  describe("settle", function () {
    it("pays a first promise in full to the provider, submitted by a third party", async function () {
      const { channels, token, stranger, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const signature = await signPromise(consumer, address, provider.address, E("2"));
      await expect(channels.connect(stranger).settle(consumer.address, provider.address, E("2"), signature))
        .to.emit(channels, "PromiseSettled")
        .withArgs(id, provider.address, E("2"), E("2"));
      expect(await token.balanceOf(provider.address)).to.equal(E("2"));
      expect(await channels.channel(id)).to.deep.equal([E("8"), E("2"), 0n]);
    });

    it("pays only the difference for a later, higher promise", async function () {
      const { channels, token, consumer, provider, id, address } = await loadFixture(fundedFixture);
      await channels.settle(consumer.address, provider.address, E("2"), await signPromise(consumer, address, provider.address, E("2")));
      await expect(channels.settle(consumer.address, provider.address, E("3.5"), await signPromise(consumer, address, provider.address, E("3.5"))))
        .to.emit(channels, "PromiseSettled")
        .withArgs(id, provider.address, E("1.5"), E("3.5"));
      expect(await token.balanceOf(provider.address)).to.equal(E("3.5"));
    });

    it("pays the provider's current beneficiary", async function () {
      const { channels, registry, token, stranger, consumer, provider, address } = await loadFixture(fundedFixture);
      const registryAddress = await registry.getAddress();
      await registry.setBeneficiary(provider.address, stranger.address, 0n, await signBeneficiaryChange(provider, registryAddress, stranger.address, 0n));
      await channels.settle(consumer.address, provider.address, E("1"), await signPromise(consumer, address, provider.address, E("1")));
      expect(await token.balanceOf(stranger.address)).to.equal(E("1"));
      expect(await token.balanceOf(provider.address)).to.equal(0n);
    });

    it("refuses a promise that is not above what was settled, and pays nothing", async function () {
      const { channels, token, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const two = await signPromise(consumer, address, provider.address, E("2"));
      await channels.settle(consumer.address, provider.address, E("2"), two);
      await expect(channels.settle(consumer.address, provider.address, E("2"), two))
        .to.be.revertedWithCustomError(channels, "PromiseNotAboveSettled")
        .withArgs(id, E("2"), E("2"));
      const one = await signPromise(consumer, address, provider.address, E("1"));
      await expect(channels.settle(consumer.address, provider.address, E("1"), one))
        .to.be.revertedWithCustomError(channels, "PromiseNotAboveSettled")
        .withArgs(id, E("1"), E("2"));
      expect(await token.balanceOf(provider.address)).to.equal(E("2"));
    });

    it("refuses a promise not signed by the consumer", async function () {
      const { channels, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const forged = await provider.signTypedData(
        channelsDomain(await chainId(), address),
        {
          Promise: [
            { name: "channelId", type: "bytes32" },
            { name: "amount", type: "uint256" },
          ],
        },
        { channelId: id, amount: E("5") },
      );
      await expect(channels.settle(consumer.address, provider.address, E("5"), forged))
        .to.be.revertedWithCustomError(channels, "PromiseSignatureInvalid")
        .withArgs(id, consumer.address, provider.address);
    });

    it("refuses a promise made for another channel of the same consumer", async function () {
      const { channels, registry, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const otherProvider = await newIdentity();
      await registerIdentity(registry, otherProvider);
      const signature = await signPromise(consumer, address, otherProvider.address, E("1"));
      await expect(channels.settle(consumer.address, provider.address, E("1"), signature))
        .to.be.revertedWithCustomError(channels, "PromiseSignatureInvalid")
        .withArgs(id, consumer.address, (recovered: string) => recovered !== consumer.address);
    });

    it("refuses a promise signed for another chain or another channels contract", async function () {
      const { channels, consumer, provider, address } = await loadFixture(fundedFixture);
      const otherChain = await signPromise(consumer, address, provider.address, E("1"), channelsDomain(5n, address));
      const otherContract = await signPromise(
        consumer,
        address,
        provider.address,
        E("1"),
        channelsDomain(await chainId(), ethers.Wallet.createRandom().address),
      );
      for (const signature of [otherChain, otherContract]) {
        await expect(channels.settle(consumer.address, provider.address, E("1"), signature)).to.be.revertedWithCustomError(channels, "PromiseSignatureInvalid");
      }
    });

    it("refuses the malleable twin of a valid promise signature", async function () {
      const { channels, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const signature = await signPromise(consumer, address, provider.address, E("1"));
      await expect(channels.settle(consumer.address, provider.address, E("1"), malleate(signature)))
        .to.be.revertedWithCustomError(channels, "PromiseSignatureInvalid")
        .withArgs(id, consumer.address, ethers.ZeroAddress);
    });

    it("pays the balance for an over-balance promise and the rest after a top-up", async function () {
      const { channels, token, consumer, provider, id, address } = await loadFixture(fundedFixture);
      const signature = await signPromise(consumer, address, provider.address, E("15"));
      await expect(channels.settle(consumer.address, provider.address, E("15"), signature))
        .to.emit(channels, "PromiseSettled")
        .withArgs(id, provider.address, E("10"), E("10"));
      await expect(channels.settle(consumer.address, provider.address, E("15"), signature))
        .to.be.revertedWithCustomError(channels, "ChannelInsufficientBalance")
        .withArgs(id, 0n, E("5"));
      await channels.connect(consumer).deposit(consumer.address, provider.address, E("20"));
      await expect(channels.settle(consumer.address, provider.address, E("15"), signature))
        .to.emit(channels, "PromiseSettled")
        .withArgs(id, provider.address, E("5"), E("15"));
      expect(await token.balanceOf(provider.address)).to.equal(E("15"));
      expect(await channels.channel(id)).to.deep.equal([E("15"), E("15"), 0n]);
    });
  });

  describe("unilateral exit", function () {
    it("returns the remainder to the consumer after the challenge period", async function () {
      const { channels, token, consumer, provider, id } = await loadFixture(fundedFixture);
      const before = await token.balanceOf(consumer.address);
      const tx = channels.connect(consumer).requestWithdrawal(provider.address);
      const readyAt = BigInt(await time.latest()) + 1n + CHALLENGE_PERIOD;
      await expect(tx).to.emit(channels, "WithdrawalRequested").withArgs(id, readyAt);
      expect((await channels.channel(id))[2]).to.equal(readyAt);
      await time.increaseTo(readyAt);
      await expect(channels.connect(consumer).withdraw(provider.address)).to.emit(channels, "Withdrawn").withArgs(id, consumer.address, E("10"));
      expect(await token.balanceOf(consumer.address)).to.equal(before + E("10"));
      expect(await channels.channel(id)).to.deep.equal([0n, 0n, 0n]);
    });

    it("refuses to withdraw before the challenge period has passed", async function () {
      const { channels, consumer, provider, id } = await loadFixture(fundedFixture);
      await channels.connect(consumer).requestWithdrawal(provider.address);
      const readyAt = (await channels.channel(id))[2];
      await expect(channels.connect(consumer).withdraw(provider.address))
        .to.be.revertedWithCustomError(channels, "WithdrawalNotReady")
        .withArgs(id, readyAt, (now: bigint) => now < readyAt);
    });

    it("refuses to withdraw without a request", async function () {
      const { channels, consumer, provider, id } = await loadFixture(fundedFixture);
      await expect(channels.connect(consumer).withdraw(provider.address)).to.be.revertedWithCustomError(channels, "WithdrawalNotRequested").withArgs(id);
    });

    it("lets the provider settle during the challenge period, then the consumer takes the rest", async function () {
      const { channels, token, consumer, provider, id, address } = await loadFixture(fundedFixture);
      await channels.connect(consumer).requestWithdrawal(provider.address);
      await channels.connect(provider).settle(consumer.address, provider.address, E("4"), await signPromise(consumer, address, provider.address, E("4")));
      await time.increase(CHALLENGE_PERIOD);
      await expect(channels.connect(consumer).withdraw(provider.address)).to.emit(channels, "Withdrawn").withArgs(id, consumer.address, E("6"));
      expect(await token.balanceOf(provider.address)).to.equal(E("4"));
    });

    it("cancels a pending withdrawal on request, and refuses to cancel none", async function () {
      const { channels, consumer, provider, id } = await loadFixture(fundedFixture);
      await channels.connect(consumer).requestWithdrawal(provider.address);
      await expect(channels.connect(consumer).cancelWithdrawal(provider.address)).to.emit(channels, "WithdrawalCancelled").withArgs(id);
      expect((await channels.channel(id))[2]).to.equal(0n);
      await expect(channels.connect(consumer).cancelWithdrawal(provider.address))
        .to.be.revertedWithCustomError(channels, "WithdrawalNotRequested")
        .withArgs(id);
    });

    it("only touches the caller's own channel", async function () {
      const { channels, stranger, provider, id } = await loadFixture(fundedFixture);
      await channels.connect(stranger).requestWithdrawal(provider.address);
      expect((await channels.channel(id))[2]).to.equal(0n);
      await time.increase(CHALLENGE_PERIOD);
      await expect(channels.connect(stranger).withdraw(provider.address))
        .to.emit(channels, "Withdrawn")
        .withArgs(channelIdOf(stranger.address, provider.address), stranger.address, 0n);
      expect((await channels.channel(id))[0]).to.equal(E("10"));
    });
  });

  describe("against a hostile token that re-enters", function () {
    async function hostileFixture() {
      const registry = await deployRegistry();
      const token = await ethers.deployContract("ReentrantToken");
      const channels = await ethers.deployContract("PaymentChannels", [token, registry, CHALLENGE_PERIOD]);
      const consumer = await newIdentity();
      const provider = await newIdentity();
      await registerIdentity(registry, consumer);
      await registerIdentity(registry, provider);
      await token.mint(consumer.address, E("10"));
      await token.connect(consumer).approve(await channels.getAddress(), ethers.MaxUint256);
      await channels.connect(consumer).deposit(consumer.address, provider.address, E("10"));
      return { token, channels, consumer, provider, address: await channels.getAddress() };
    }

    it("pays a promise once even when the payout re-enters settle", async function () {
      const { token, channels, consumer, provider, address } = await loadFixture(hostileFixture);
      const signature = await signPromise(consumer, address, provider.address, E("3"));
      await token.arm(address, channels.interface.encodeFunctionData("settle", [consumer.address, provider.address, E("3"), signature]));
      await channels.settle(consumer.address, provider.address, E("3"), signature);
      expect(await token.attempted()).to.equal(true);
      expect(await token.reentrySucceeded()).to.equal(false);
      expect(channels.interface.parseError(await token.reentryError())?.name).to.equal("ReentrancyGuardReentrantCall");
      expect(await token.balanceOf(provider.address)).to.equal(E("3"));
    });

    it("pays a withdrawal once even when the payout re-enters withdraw", async function () {
      const { token, channels, consumer, provider, address } = await loadFixture(hostileFixture);
      await channels.connect(consumer).requestWithdrawal(provider.address);
      await time.increase(CHALLENGE_PERIOD);
      await token.arm(address, channels.interface.encodeFunctionData("withdraw", [provider.address]));
      await channels.connect(consumer).withdraw(provider.address);
      expect(await token.attempted()).to.equal(true);
      expect(await token.reentrySucceeded()).to.equal(false);
      expect(channels.interface.parseError(await token.reentryError())?.name).to.equal("ReentrancyGuardReentrantCall");
      expect(await token.balanceOf(consumer.address)).to.equal(E("10"));
      expect(await token.balanceOf(address)).to.equal(0n);
    });
    it("refuses a deposit that re-enters deposit or depositWithPermit, keeping one deposit", async function () {
      const { token, channels, consumer, provider, address } = await loadFixture(hostileFixture);
      await token.mint(consumer.address, E("2"));
      const id = channelIdOf(consumer.address, provider.address);
      for (const payload of [
        channels.interface.encodeFunctionData("deposit", [consumer.address, provider.address, E("1")]),
        channels.interface.encodeFunctionData("depositWithPermit", [consumer.address, provider.address, E("1"), 0n, 0, ethers.ZeroHash, ethers.ZeroHash]),
      ]) {
        await token.arm(address, payload);
        await channels.connect(consumer).depositWithPermit(consumer.address, provider.address, E("1"), 0n, 0, ethers.ZeroHash, ethers.ZeroHash);
        expect(await token.reentrySucceeded()).to.equal(false);
        expect(channels.interface.parseError(await token.reentryError())?.name).to.equal("ReentrancyGuardReentrantCall");
      }
      expect((await channels.channel(id))[0]).to.equal(E("12"));
    });
  });

  describe("views", function () {
    it("name the token, the registry, the challenge period and the EIP-712 domain", async function () {
      const { channels, token, registry, consumer, provider, address } = await loadFixture(fundedFixture);
      expect(await channels.token()).to.equal(await token.getAddress());
      expect(await channels.registry()).to.equal(await registry.getAddress());
      expect(await channels.challengePeriod()).to.equal(CHALLENGE_PERIOD);
      expect(await channels.channelId(consumer.address, provider.address)).to.equal(channelIdOf(consumer.address, provider.address));
      expect(await channels.domainSeparator()).to.equal(TypedDataEncoder.hashDomain(channelsDomain(await chainId(), address)));
    });
  });
});
