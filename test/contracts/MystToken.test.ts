import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { SUPPLY, permitSignature } from "./fixtures";

async function tokenFixture() {
  const [holder, spender, other] = await ethers.getSigners();
  const token = await ethers.deployContract("MystToken", [holder.address, SUPPLY]);
  return { token, holder, spender, other };
}

describe("MystToken", function () {
  it("is MYST with 18 decimals and mints the whole supply to the holder", async function () {
    const { token, holder } = await loadFixture(tokenFixture);
    expect(await token.name()).to.equal("Myst");
    expect(await token.symbol()).to.equal("MYST");
    expect(await token.decimals()).to.equal(18n);
    expect(await token.totalSupply()).to.equal(SUPPLY);
    expect(await token.balanceOf(holder.address)).to.equal(SUPPLY);
  });

  it("sets an allowance from an ERC-2612 permit signed as a wallet would", async function () {
    const { token, holder, spender } = await loadFixture(tokenFixture);
    const deadline = BigInt(await time.latest()) + 3600n; // chain time: earlier suites move it ahead of the clock
    const value = ethers.parseEther("5");
    const signature = await permitSignature(token, holder, spender.address, value, deadline);
    await token.connect(spender).permit(holder.address, spender.address, value, deadline, signature.v, signature.r, signature.s);
    expect(await token.allowance(holder.address, spender.address)).to.equal(value);
    expect(await token.nonces(holder.address)).to.equal(1n);
  });

  it("is ERC-1363: transferAndCall moves the tokens and notifies a contract, and refuses an account with no code", async function () {
    const { token, holder, other } = await loadFixture(tokenFixture);
    expect(await token.supportsInterface("0xb0202a11")).to.equal(true); // type(IERC1363).interfaceId
    await expect(token.connect(holder)["transferAndCall(address,uint256)"](other.address, 1n))
      .to.be.revertedWithCustomError(token, "ERC1363InvalidReceiver")
      .withArgs(other.address);
    expect(await token.balanceOf(other.address)).to.equal(0n);
  });
});
