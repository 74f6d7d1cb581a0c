import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { Wallet, ZeroAddress, type ContractTransactionResponse } from "ethers";
import { channelIdOf, channelsDomain, promiseTypes, registrationTypes, registryDomain, beneficiaryChangeTypes } from "../../node/chain/eip712";

/**
 * gasUsed of each operation a node pays for, on a fresh deployment in `hre`'s in-process chain.
 * Shared by `npm run gas` (which writes bench/gas.json and docs/gas.md) and the gas snapshot test
 * (which fails when an operation grows past bench/gas.json).
 */
export async function measureGas(
  hre: HardhatRuntimeEnvironment,
): Promise<{ rows: Record<string, number>; laterSettle: ContractTransactionResponse; addresses: { registry: string; token: string } }> {
  const { ethers } = hre;
  const [deployer, relayer] = await ethers.getSigners();
  const chainId = (await ethers.provider.getNetwork()).chainId;
  const token = await ethers.deployContract("MystToken", [deployer.address, ethers.parseEther("1000000")]);
  const registry = await ethers.deployContract("IdentityRegistry");
  const channels = await ethers.deployContract("PaymentChannels", [token, registry, 3600n]);
  const registryAddress = await registry.getAddress();
  const channelsAddress = await channels.getAddress();

  const identity = async () => {
    const wallet = new Wallet(Wallet.createRandom().privateKey, ethers.provider);
    await deployer.sendTransaction({ to: wallet.address, value: ethers.parseEther("1") });
    return wallet;
  };
  const register = async (w: Wallet, beneficiary = ZeroAddress) => {
    const signature = await w.signTypedData(registryDomain(chainId, registryAddress), registrationTypes, {
      identity: w.address,
      beneficiary,
    });
    return gasOf(registry.connect(relayer).register("0x" + w.signingKey.publicKey.slice(4), beneficiary, signature));
  };
  const promise = (consumer: Wallet, provider: string, amount: bigint) =>
    consumer.signTypedData(channelsDomain(chainId, channelsAddress), promiseTypes, {
      channelId: channelIdOf(consumer.address, provider),
      amount,
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

  await token.transfer(consumer.address, ethers.parseEther("100"));
  await token.connect(consumer).approve(channelsAddress, ethers.MaxUint256);
  const E = ethers.parseEther;
  rows["deposit (first)"] = await gasOf(channels.connect(consumer).deposit(consumer.address, provider.address, E("10")));
  rows["deposit (later)"] = await gasOf(channels.connect(consumer).deposit(consumer.address, provider.address, E("10")));
  rows["settle (first)"] = await gasOf(
    channels.connect(relayer).settle(consumer.address, provider.address, E("1"), await promise(consumer, provider.address, E("1"))),
  );
  const laterSettle = await channels.connect(relayer).settle(consumer.address, provider.address, E("2"), await promise(consumer, provider.address, E("2")));
  rows["settle (later)"] = await gasOf(Promise.resolve(laterSettle));
  rows["request withdrawal"] = await gasOf(channels.connect(consumer).requestWithdrawal(provider.address));
  await ethers.provider.send("evm_increaseTime", [3600]);
  rows.withdraw = await gasOf(channels.connect(consumer).withdraw(provider.address));
  return { rows, laterSettle, addresses: { registry: registryAddress, token: await token.getAddress() } };
}

export async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<number> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("no receipt");
  return Number(receipt.gasUsed);
}
