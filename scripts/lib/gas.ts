import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { AbiCoder, Signature, Wallet, ZeroAddress, type ContractTransactionResponse } from "ethers";
import {
  beneficiaryChangeTypes,
  permitTypes,
  promiseTypes,
  registrationTypes,
  registryDomain,
  relayedSettlementTypes,
  vaultDomain,
} from "../../node/chain/eip712";
import { packPromise, packPromises } from "../../node/chain/vault";

/** How many promises the batch rows settle in one transaction. */
export const BATCH = 20;

/**
 * gasUsed of each operation a node pays for, on a fresh deployment in `hre`'s in-process chain.
 * Shared by `npm run gas` (which writes bench/gas.json and docs/gas.md) and the gas snapshot test
 * (which fails when an operation grows past bench/gas.json). "later" means the slots the operation
 * writes already hold a non-zero value (the pair settled before, the provider has earnings), which
 * is the steady state of a provider that settles regularly.
 */
export async function measureGas(hre: HardhatRuntimeEnvironment): Promise<{
  rows: Record<string, number>;
  laterSettle: ContractTransactionResponse;
  laterBatch: ContractTransactionResponse;
  firstSettle: ContractTransactionResponse;
  laterDeposit: ContractTransactionResponse;
  addresses: { registry: string; token: string; vault: string };
}> {
  const { ethers } = hre;
  const [deployer, relayer] = await ethers.getSigners();
  const chainId = (await ethers.provider.getNetwork()).chainId;
  const token = await ethers.deployContract("MystToken", [deployer.address, ethers.parseEther("1000000")]);
  const registry = await ethers.deployContract("IdentityRegistry");
  const vault = await ethers.deployContract("ConsumerVault", [token, registry, 3600n]);
  const registryAddress = await registry.getAddress();
  const vaultAddress = await vault.getAddress();
  const E = ethers.parseEther;

  const identity = async (eth = ethers.parseEther("1")) => {
    const wallet = new Wallet(Wallet.createRandom().privateKey, ethers.provider);
    if (eth > 0n) await deployer.sendTransaction({ to: wallet.address, value: eth });
    return wallet;
  };
  const register = async (w: Wallet, beneficiary = ZeroAddress) => {
    const signature = await w.signTypedData(registryDomain(chainId, registryAddress), registrationTypes, { identity: w.address, beneficiary });
    return gasOf(registry.connect(relayer).register("0x" + w.signingKey.publicKey.slice(4), beneficiary, signature));
  };
  const promise = async (consumer: Wallet, provider: string, amount: bigint) => ({
    consumer: consumer.address,
    amount,
    signature: await consumer.signTypedData(vaultDomain(chainId, vaultAddress), promiseTypes, { consumer: consumer.address, provider, amount }),
  });

  const rows: Record<string, number> = {};
  const consumer = await identity();
  const provider = await identity();
  const other = await identity();
  rows["register (relayed)"] = await register(consumer);
  await register(provider);
  rows["register (relayed, with beneficiary)"] = await register(other, relayer.address);
  rows["change beneficiary (relayed)"] = await gasOf(
    registry.connect(relayer).setBeneficiary(
      provider.address,
      other.address,
      0n,
      await provider.signTypedData(registryDomain(chainId, registryAddress), beneficiaryChangeTypes, {
        identity: provider.address,
        beneficiary: other.address,
        nonce: 0n,
      }),
    ),
  );

  // The node's deposit: one token call (ERC-1363 transferAndCall); the first one names its escrow.
  await token.transfer(consumer.address, E("100"));
  const withEscrow = AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [consumer.address, E("2")]);
  rows["deposit (first)"] = await gasOf(token.connect(consumer)["transferAndCall(address,uint256,bytes)"](vaultAddress, E("12"), withEscrow));
  const laterDeposit = await token.connect(consumer)["transferAndCall(address,uint256)"](vaultAddress, E("10"));
  rows["deposit (later)"] = await gasOf(Promise.resolve(laterDeposit));
  // The plain ERC-20 ways in: an exact approval (its own transaction, not counted), or a permit.
  await token.connect(consumer).approve(vaultAddress, E("10"));
  rows["deposit with approval (later)"] = await gasOf(vault.connect(consumer).deposit(consumer.address, E("10"), 0n));
  const deadline = BigInt((await ethers.provider.getBlock("latest"))!.timestamp + 3600);
  const permit = Signature.from(
    await consumer.signTypedData({ name: "Myst", version: "1", chainId, verifyingContract: await token.getAddress() }, permitTypes, {
      owner: consumer.address,
      spender: vaultAddress,
      value: E("10"),
      nonce: await token.nonces(consumer.address),
      deadline,
    }),
  );
  rows["deposit with permit (later)"] = await gasOf(
    vault.connect(consumer).depositWithPermit(consumer.address, E("10"), 0n, deadline, permit.v, permit.r, permit.s),
  );

  const settle = async (c: Wallet, amount: bigint) => vault.connect(relayer).settle(provider.address, packPromise(await promise(c, provider.address, amount)));
  const firstSettle = await settle(consumer, E("1"));
  rows["settle (first)"] = await gasOf(Promise.resolve(firstSettle));
  const laterSettle = await settle(consumer, E("2"));
  rows["settle (later)"] = await gasOf(Promise.resolve(laterSettle));
  // A provider's new consumer: the pair is new, the provider's earnings slot is not.
  const newcomer = await identity(0n);
  await token.approve(vaultAddress, E("5"));
  await vault.deposit(newcomer.address, E("5"), 0n);
  rows["settle (new pair)"] = await gasOf(settle(newcomer, E("1")));

  // A provider with BATCH consumers, each settled once before: the later batch is the steady state.
  const consumers: Wallet[] = [];
  for (let i = 0; i < BATCH; i++) {
    const c = await identity(0n);
    await token.transfer(c.address, E("10"));
    consumers.push(c);
  }
  await token.approve(vaultAddress, ethers.MaxUint256);
  for (const c of consumers) await vault.deposit(c.address, E("5"), E("1"));
  const batch = async (amount: bigint) => packPromises(await Promise.all(consumers.map((c) => promise(c, provider.address, amount))));
  rows[`settle batch of ${BATCH} (first)`] = await gasOf(vault.connect(relayer).settleBatch(provider.address, await batch(E("0.1"))));
  const laterBatch = await vault.connect(relayer).settleBatch(provider.address, await batch(E("0.2")));
  rows[`settle batch of ${BATCH} (later)`] = await gasOf(Promise.resolve(laterBatch));
  rows[`settle batch of ${BATCH} (later), per promise`] = Math.ceil(rows[`settle batch of ${BATCH} (later)`] / BATCH);

  // Relayed by an account with MYST-only incentives; the provider holds no ETH.
  const poor = await identity(0n);
  await register(poor);
  const relayedBatch = async (amount: bigint, nonce: bigint) => {
    const promises = await Promise.all(consumers.map((c) => promise(c, poor.address, amount)));
    const signature = await poor.signTypedData(vaultDomain(chainId, vaultAddress), relayedSettlementTypes, {
      provider: poor.address,
      relayer: relayer.address,
      claims: promises.map((p) => ({ consumer: p.consumer, amount: p.amount })),
      maxFee: E("0.01"),
      nonce,
    });
    return vault.connect(relayer).settleRelayed(poor.address, relayer.address, packPromises(promises), E("0.01"), E("0.01"), nonce, signature);
  };
  rows[`settle relayed batch of ${BATCH} (first)`] = await gasOf(relayedBatch(E("0.1"), 0n));
  rows[`settle relayed batch of ${BATCH} (later)`] = await gasOf(relayedBatch(E("0.2"), 1n));
  rows["withdraw earnings"] = await gasOf(vault.connect(relayer).withdrawEarnings(provider.address));

  rows["request exit"] = await gasOf(vault.connect(consumer).requestExit());
  await ethers.provider.send("evm_increaseTime", [3600]);
  rows.withdraw = await gasOf(vault.connect(consumer).withdraw());
  return {
    rows,
    laterSettle,
    laterBatch,
    firstSettle,
    laterDeposit,
    addresses: { registry: registryAddress, token: await token.getAddress(), vault: vaultAddress },
  };
}

/** What a transaction's data costs (EIP-2028): 4 gas a zero byte, 16 a non-zero one. */
export function calldataGas(data: string): { gas: number; zero: number; nonZero: number } {
  const bytes = Buffer.from(data.replace(/^0x/, ""), "hex");
  const zero = bytes.filter((b) => b === 0).length;
  return { gas: zero * 4 + (bytes.length - zero) * 16, zero, nonZero: bytes.length - zero };
}

export async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<number> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("no receipt");
  return Number(receipt.gasUsed);
}
