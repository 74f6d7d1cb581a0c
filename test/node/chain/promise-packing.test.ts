import { expect } from "chai";
import { Signature, Wallet, dataSlice, getAddress, toBigInt } from "ethers";
import { MAX_PROMISE_AMOUNT, PACKED_PROMISE_BYTES, packPromise, packPromises } from "../../../node/chain/vault";

describe("packed promises (the vault's calldata form)", function () {
  const consumer = Wallet.createRandom();
  const signature = consumer.signingKey.sign("0x" + "ab".repeat(32)).serialized;

  it("packs consumer ‖ uint96 amount ‖ r ‖ yParity‖s into 96 bytes", function () {
    const packed = packPromise({ consumer: consumer.address, amount: 123_456_789n, signature });
    const sig = Signature.from(signature);
    expect((packed.length - 2) / 2).to.equal(PACKED_PROMISE_BYTES);
    expect(getAddress(dataSlice(packed, 0, 20))).to.equal(consumer.address);
    expect(toBigInt(dataSlice(packed, 20, 32))).to.equal(123_456_789n);
    expect(dataSlice(packed, 32, 64)).to.equal(sig.r);
    expect(dataSlice(packed, 64, 96)).to.equal(sig.yParityAndS);
  });

  it("puts promises back to back", function () {
    const a = packPromise({ consumer: consumer.address, amount: 1n, signature });
    const b = packPromise({ consumer: consumer.address, amount: MAX_PROMISE_AMOUNT, signature });
    expect(
      packPromises([
        { consumer: consumer.address, amount: 1n, signature },
        { consumer: consumer.address, amount: MAX_PROMISE_AMOUNT, signature },
      ]),
    ).to.equal(a + b.slice(2));
  });

  it("refuses an amount that does not fit 96 bits rather than cutting it", function () {
    expect(() => packPromise({ consumer: consumer.address, amount: MAX_PROMISE_AMOUNT + 1n, signature })).to.throw(RangeError, /96 bits/);
    expect(() => packPromise({ consumer: consumer.address, amount: -1n, signature })).to.throw(RangeError);
  });
});
