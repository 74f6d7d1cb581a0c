import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { TypedDataEncoder, ZeroAddress } from "ethers";
import { registryDomain } from "../../node/chain/eip712";
import { chainId, deployRegistry, malleate, newIdentity, publicKeyOf, registerIdentity, signBeneficiaryChange, signRegistration } from "./fixtures";

async function registryFixture() {
  const [, relayer, beneficiary, other] = await ethers.getSigners();
  const registry = await deployRegistry();
  const identity = await newIdentity();
  return { registry, relayer, beneficiary, other, identity, address: await registry.getAddress() };
}

describe("IdentityRegistry", function () {
  describe("register", function () {
    it("registers an identity relayed by another account and publishes its public key", async function () {
      const { registry, relayer, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address);
      await expect(registry.connect(relayer).register(publicKeyOf(identity), ZeroAddress, signature))
        .to.emit(registry, "IdentityRegistered")
        .withArgs(identity.address, identity.address, publicKeyOf(identity));
      expect(await registry.isRegistered(identity.address)).to.equal(true);
      expect(await registry.publicKeyOf(identity.address)).to.equal(publicKeyOf(identity));
      expect(await registry.beneficiaryOf(identity.address)).to.equal(identity.address);
    });

    it("lets the identity submit its own registration", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address);
      await registry.connect(identity).register(publicKeyOf(identity), ZeroAddress, signature);
      expect(await registry.isRegistered(identity.address)).to.equal(true);
    });

    it("records the signed beneficiary", async function () {
      const { registry, relayer, beneficiary, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address, beneficiary.address);
      await expect(registry.connect(relayer).register(publicKeyOf(identity), beneficiary.address, signature))
        .to.emit(registry, "IdentityRegistered")
        .withArgs(identity.address, beneficiary.address, publicKeyOf(identity));
      expect(await registry.beneficiaryOf(identity.address)).to.equal(beneficiary.address);
    });

    it("treats the identity named as its own beneficiary like no beneficiary", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address, identity.address);
      await registry.register(publicKeyOf(identity), identity.address, signature);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(identity.address);
    });

    it("refuses a relayer that swaps in its own beneficiary", async function () {
      const { registry, relayer, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address);
      await expect(registry.connect(relayer).register(publicKeyOf(identity), relayer.address, signature))
        .to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid")
        .withArgs(identity.address, (recovered: string) => recovered !== identity.address);
    });

    for (const length of [0, 33, 63, 65]) {
      it(`rejects a public key of ${length} bytes`, async function () {
        const { registry, identity, address } = await loadFixture(registryFixture);
        const signature = await signRegistration(identity, address);
        await expect(registry.register(ethers.randomBytes(length), ZeroAddress, signature))
          .to.be.revertedWithCustomError(registry, "IdentityPublicKeyLength")
          .withArgs(length);
      });
    }

    it("rejects registering the same identity twice", async function () {
      const { registry, identity } = await loadFixture(registryFixture);
      await registerIdentity(registry, identity);
      await expect(registerIdentity(registry, identity)).to.be.revertedWithCustomError(registry, "IdentityAlreadyRegistered").withArgs(identity.address);
    });

    it("rejects a signature made by a different key", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const impostor = await newIdentity();
      const signature = await impostor.signTypedData(
        registryDomain(await chainId(), address),
        {
          Registration: [
            { name: "identity", type: "address" },
            { name: "beneficiary", type: "address" },
          ],
        },
        { identity: identity.address, beneficiary: ZeroAddress },
      );
      await expect(registry.register(publicKeyOf(identity), ZeroAddress, signature))
        .to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid")
        .withArgs(identity.address, impostor.address);
    });

    it("rejects a signature made for another chain", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address, ZeroAddress, registryDomain(1n, address));
      await expect(registry.register(publicKeyOf(identity), ZeroAddress, signature)).to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid");
    });

    it("rejects a signature made for another registry contract", async function () {
      const { registry, identity } = await loadFixture(registryFixture);
      const otherRegistry = await deployRegistry();
      const signature = await signRegistration(identity, await otherRegistry.getAddress());
      await expect(registry.register(publicKeyOf(identity), ZeroAddress, signature)).to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid");
      await otherRegistry.register(publicKeyOf(identity), ZeroAddress, signature);
      expect(await otherRegistry.isRegistered(identity.address)).to.equal(true);
    });

    it("rejects the malleable high-s twin of a valid signature", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address);
      await expect(registry.register(publicKeyOf(identity), ZeroAddress, malleate(signature)))
        .to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid")
        .withArgs(identity.address, ZeroAddress);
    });

    it("rejects signatures of the wrong length and garbage signatures", async function () {
      const { registry, identity, address } = await loadFixture(registryFixture);
      const signature = await signRegistration(identity, address);
      for (const bad of [ethers.dataSlice(signature, 0, 64), "0x", ethers.hexlify(new Uint8Array(65))]) {
        await expect(registry.register(publicKeyOf(identity), ZeroAddress, bad))
          .to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid")
          .withArgs(identity.address, ZeroAddress);
      }
    });
  });

  describe("views of an unknown identity", function () {
    it("says it is not registered, refuses to name a key, and names the identity as its own beneficiary", async function () {
      const { registry, identity } = await loadFixture(registryFixture);
      expect(await registry.isRegistered(identity.address)).to.equal(false);
      expect(await registry.nonceOf(identity.address)).to.equal(0n);
      await expect(registry.publicKeyOf(identity.address)).to.be.revertedWithCustomError(registry, "IdentityNotRegistered").withArgs(identity.address);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(identity.address);
    });

    it("publishes the EIP-712 domain wallets sign under", async function () {
      const { registry, address } = await loadFixture(registryFixture);
      expect(await registry.domainSeparator()).to.equal(TypedDataEncoder.hashDomain(registryDomain(await chainId(), address)));
    });
  });

  describe("setBeneficiary", function () {
    async function registeredFixture() {
      const f = await registryFixture();
      await registerIdentity(f.registry, f.identity);
      return f;
    }

    /** The identity signs a change to `to` under `nonce`; the test account submits it. */
    async function changeBeneficiary(f: Awaited<ReturnType<typeof registeredFixture>>, to: string, nonce: bigint) {
      return f.registry.setBeneficiary(f.identity.address, to, nonce, await signBeneficiaryChange(f.identity, f.address, to, nonce));
    }

    it("changes the beneficiary with the identity's signature, relayed, and consumes the nonce", async function () {
      const { registry, relayer, beneficiary, identity, address } = await loadFixture(registeredFixture);
      const signature = await signBeneficiaryChange(identity, address, beneficiary.address, 0n);
      await expect(registry.connect(relayer).setBeneficiary(identity.address, beneficiary.address, 0n, signature))
        .to.emit(registry, "BeneficiaryChanged")
        .withArgs(identity.address, beneficiary.address, 0n);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(beneficiary.address);
      expect(await registry.nonceOf(identity.address)).to.equal(1n);
    });

    it("rejects a replayed beneficiary change", async function () {
      const { registry, beneficiary, other, identity, address } = await loadFixture(registeredFixture);
      const first = await signBeneficiaryChange(identity, address, beneficiary.address, 0n);
      await registry.setBeneficiary(identity.address, beneficiary.address, 0n, first);
      const second = await signBeneficiaryChange(identity, address, other.address, 1n);
      await registry.setBeneficiary(identity.address, other.address, 1n, second);
      await expect(registry.setBeneficiary(identity.address, beneficiary.address, 0n, first))
        .to.be.revertedWithCustomError(registry, "IdentityNonceInvalid")
        .withArgs(identity.address, 2n, 0n);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(other.address);
    });

    it("rejects a nonce from the future", async function () {
      const { registry, beneficiary, identity, address } = await loadFixture(registeredFixture);
      const signature = await signBeneficiaryChange(identity, address, beneficiary.address, 5n);
      await expect(registry.setBeneficiary(identity.address, beneficiary.address, 5n, signature))
        .to.be.revertedWithCustomError(registry, "IdentityNonceInvalid")
        .withArgs(identity.address, 0n, 5n);
    });

    it("rejects a change signed by someone else", async function () {
      const { registry, beneficiary, identity, address } = await loadFixture(registeredFixture);
      const impostor = await newIdentity();
      const signature = await impostor.signTypedData(
        registryDomain(await chainId(), address),
        {
          BeneficiaryChange: [
            { name: "identity", type: "address" },
            { name: "beneficiary", type: "address" },
            { name: "nonce", type: "uint256" },
          ],
        },
        { identity: identity.address, beneficiary: beneficiary.address, nonce: 0n },
      );
      await expect(registry.setBeneficiary(identity.address, beneficiary.address, 0n, signature))
        .to.be.revertedWithCustomError(registry, "IdentitySignatureInvalid")
        .withArgs(identity.address, impostor.address);
    });

    it("rejects a change for an unregistered identity", async function () {
      const { registry, beneficiary, address } = await loadFixture(registeredFixture);
      const stranger = await newIdentity();
      const signature = await signBeneficiaryChange(stranger, address, beneficiary.address, 0n);
      await expect(registry.setBeneficiary(stranger.address, beneficiary.address, 0n, signature))
        .to.be.revertedWithCustomError(registry, "IdentityNotRegistered")
        .withArgs(stranger.address);
    });

    it("goes back to paying the identity itself when the beneficiary is set to the identity", async function () {
      const f = await loadFixture(registeredFixture);
      const { registry, beneficiary, identity } = f;
      await changeBeneficiary(f, beneficiary.address, 0n);
      await changeBeneficiary(f, identity.address, 1n);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(identity.address);
    });

    it("goes back to paying the identity itself when the beneficiary is set to zero", async function () {
      const f = await loadFixture(registeredFixture);
      const { registry, beneficiary, identity } = f;
      await changeBeneficiary(f, beneficiary.address, 0n);
      await expect(changeBeneficiary(f, ZeroAddress, 1n))
        .to.emit(registry, "BeneficiaryChanged")
        .withArgs(identity.address, identity.address, 1n);
      expect(await registry.beneficiaryOf(identity.address)).to.equal(identity.address);
    });
  });
});
