import { ethers } from "hardhat";
import { setBalance } from "@nomicfoundation/hardhat-network-helpers";
import { Wallet, ZeroAddress, type TypedDataDomain } from "ethers";
import {
  beneficiaryChangeTypes,
  permitTypes,
  promiseTypes,
  registrationTypes,
  registryDomain,
  relayedSettlementTypes,
  vaultDomain,
} from "../../node/chain/eip712";
import { packPromise } from "../../node/chain/vault";
import type { ConsumerVault, IdentityRegistry, MystToken } from "../../typechain-types";

export const CHALLENGE_PERIOD = 3600n;
export const SUPPLY = ethers.parseEther("1000000");

/** A node identity: a key of its own, funded with ETH so it can also act directly. */
export async function newIdentity(): Promise<Wallet> {
  const wallet = Wallet.createRandom().connect(ethers.provider) as unknown as Wallet;
  await setBalance(wallet.address, ethers.parseEther("10"));
  return wallet;
}

/** The 64-byte public key (x‖y) the registry takes. */
export function publicKeyOf(wallet: Wallet): string {
  return "0x" + wallet.signingKey.publicKey.slice(4);
}

export async function chainId(): Promise<bigint> {
  return (await ethers.provider.getNetwork()).chainId;
}

export async function signRegistration(identity: Wallet, registry: string, beneficiary: string = ZeroAddress, domain?: TypedDataDomain): Promise<string> {
  return identity.signTypedData(domain ?? registryDomain(await chainId(), registry), registrationTypes, {
    identity: identity.address,
    beneficiary,
  });
}

export async function signBeneficiaryChange(identity: Wallet, registry: string, beneficiary: string, nonce: bigint): Promise<string> {
  return identity.signTypedData(registryDomain(await chainId(), registry), beneficiaryChangeTypes, {
    identity: identity.address,
    beneficiary,
    nonce,
  });
}

/** A promise's fields as the vault reads them from its 96 packed bytes. */
export interface PromiseParts {
  consumer: string;
  amount: bigint;
  r: string;
  vs: string;
}

/** A promise for the cumulative `amount` the consumer owes `provider`, as the vault takes it: 96 packed bytes. */
export async function signPromise(consumer: Wallet, vault: string, provider: string, amount: bigint, domain?: TypedDataDomain): Promise<string> {
  const signature = await consumer.signTypedData(domain ?? vaultDomain(await chainId(), vault), promiseTypes, {
    consumer: consumer.address,
    provider,
    amount,
  });
  return packPromise({ consumer: consumer.address, amount, signature });
}

/** Packs promise fields as given (a forged or malformed promise included), back to back. */
export function pack(...promises: PromiseParts[]): string {
  return ethers.concat(promises.map((p) => ethers.solidityPacked(["address", "uint96", "bytes32", "bytes32"], [p.consumer, p.amount, p.r, p.vs])));
}

/** The fields of one packed promise. */
export function unpack(packed: string): PromiseParts {
  const bytes = ethers.getBytes(packed);
  return {
    consumer: ethers.getAddress(ethers.hexlify(bytes.slice(0, 20))),
    amount: ethers.toBigInt(bytes.slice(20, 32)),
    r: ethers.hexlify(bytes.slice(32, 64)),
    vs: ethers.hexlify(bytes.slice(64, 96)),
  };
}

/** The provider's consent to a relayed settlement of `claims`, submitted by `relayer`, with a fee of at most `maxFee`. */
export async function signRelayed(
  provider: Wallet,
  vault: string,
  relayer: string,
  claims: { consumer: string; amount: bigint }[],
  maxFee: bigint,
  nonce: bigint,
) {
  return provider.signTypedData(vaultDomain(await chainId(), vault), relayedSettlementTypes, {
    provider: provider.address,
    relayer,
    claims: claims.map((c) => ({ consumer: c.consumer, amount: c.amount })),
    maxFee,
    nonce,
  });
}

/** Turns a signature into its high-s twin: the same (r, v) curve point, equally valid for plain ecrecover. */
export function malleate(signature: string): string {
  const sig = ethers.Signature.from(signature);
  const n = BigInt("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
  const highS = n - BigInt(sig.s);
  const v = sig.v === 27 ? 28 : 27;
  return ethers.concat([sig.r, ethers.toBeHex(highS, 32), ethers.toBeHex(v, 1)]);
}

export async function registerIdentity(registry: IdentityRegistry, identity: Wallet, beneficiary = ZeroAddress) {
  const signature = await signRegistration(identity, await registry.getAddress(), beneficiary);
  await registry.register(publicKeyOf(identity), beneficiary, signature);
}

export async function deployRegistry(): Promise<IdentityRegistry> {
  return ethers.deployContract("IdentityRegistry");
}

/** The whole system, as the Ignition module wires it, plus registered identities: two consumers, two providers. */
export async function systemFixture() {
  const [deployer, relayer, stranger] = await ethers.getSigners();
  const token: MystToken = await ethers.deployContract("MystToken", [deployer.address, SUPPLY]);
  const registry = await deployRegistry();
  const vault: ConsumerVault = await ethers.deployContract("ConsumerVault", [await token.getAddress(), await registry.getAddress(), CHALLENGE_PERIOD]);
  const consumer = await newIdentity();
  const consumer2 = await newIdentity();
  const provider = await newIdentity();
  const provider2 = await newIdentity();
  for (const w of [consumer, consumer2, provider, provider2]) await registerIdentity(registry.connect(relayer), w);
  for (const c of [consumer, consumer2]) {
    await token.transfer(c.address, ethers.parseEther("1000"));
    await token.connect(c).approve(await vault.getAddress(), ethers.MaxUint256);
  }
  return { deployer, relayer, stranger, token, registry, vault, consumer, consumer2, provider, provider2 };
}

/** An ERC-2612 permit signed as a wallet would. */
export async function permitSignature(
  token: MystToken,
  owner: Wallet | { address: string; signTypedData: Wallet["signTypedData"] },
  spender: string,
  value: bigint,
  deadline: bigint,
) {
  const domain = {
    name: "Myst",
    version: "1",
    chainId: await chainId(),
    verifyingContract: await token.getAddress(),
  };
  const nonce = await token.nonces(owner.address);
  return ethers.Signature.from(await owner.signTypedData(domain, permitTypes, { owner: owner.address, spender, value, nonce, deadline }));
}
