import { expect } from "chai";
import { FreshMessages, wireGuardShape } from "../../../node/services/relay/wireguard-frames";

/** A WireGuard transport message's header and `size` bytes in all (wireguard-go pads to 16 bytes, but never past the MTU). */
function transport(receiver: number, counter: bigint, size = 1452): Buffer {
  const b = Buffer.alloc(size, 0xab);
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(receiver, 4);
  b.writeBigUInt64LE(counter, 8);
  return b;
}

describe("what the relay forwarder can tell of WireGuard without its keys", function () {
  it("takes handshake messages at their sizes and transport messages of any length from 32 (an MTU-sized one is not padded)", function () {
    const init = Buffer.alloc(148);
    init[0] = 1;
    expect(wireGuardShape(init)).to.deep.equal({ type: 1 });
    expect(wireGuardShape(Buffer.concat([init, Buffer.alloc(1)]))).to.equal(undefined);
    expect(wireGuardShape(transport(7, 5n))).to.deep.equal({ type: 4, receiver: 7, counter: 5n });
    expect(wireGuardShape(transport(7, 5n, 32))?.type, "a keepalive").to.equal(4);
    const reserved = transport(7, 5n);
    reserved[2] = 1;
    expect(wireGuardShape(reserved)).to.equal(undefined);
    expect(wireGuardShape(Buffer.from("hello, not wireguard at all, no no no"))).to.equal(undefined);
  });

  it("takes each transport message once, out of order too, and a forged counter far ahead shuts no genuine one out", function () {
    const fresh = new FreshMessages();
    expect(fresh.accept(transport(7, 10n))).to.equal(true);
    expect(fresh.accept(transport(7, 10n)), "a replay").to.equal(false);
    expect(fresh.accept(transport(9, 10n)), "another receiver's counter").to.equal(true);
    expect(fresh.accept(transport(7, 9n)), "late").to.equal(true);
    expect(fresh.accept(transport(7, 1n << 60n)), "a relay's forgery").to.equal(true);
    expect(fresh.accept(transport(7, 11n)), "the next genuine one").to.equal(true);
    const init = Buffer.alloc(148, 3);
    init.writeUInt32LE(1, 0);
    expect(fresh.accept(init)).to.equal(true);
    expect(fresh.accept(init), "a replayed handshake").to.equal(false);
  });

  it("remembers the last 32,768 transport messages across receivers and counters past 2^32, and forgets the oldest first", function () {
    const fresh = new FreshMessages();
    const high = 1n << 40n;
    // Two receivers interleaved (a rekey's old and new keypair), counters past 32 bits.
    let taken = 0;
    for (let i = 0n; i < 32_768n; i++) if (fresh.accept(transport(i % 2n === 0n ? 7 : 8, high + i, 64))) taken++;
    expect(taken).to.equal(32_768);
    expect(fresh.accept(transport(7, high, 64)), "the oldest, still remembered").to.equal(false);
    expect(fresh.accept(transport(8, high + 32_767n, 64)), "the newest, remembered").to.equal(false);
    expect(fresh.accept(transport(9, 1n, 64)), "one more: the oldest is forgotten").to.equal(true);
    expect(fresh.accept(transport(7, high, 64)), "the oldest, forgotten").to.equal(true);
    // Each one taken anew pushes the next oldest out.
    expect(fresh.accept(transport(8, high + 1n, 64)), "the second oldest, forgotten in its turn").to.equal(true);
    expect(fresh.accept(transport(8, high + 3n, 64)), "the fourth, still remembered").to.equal(false);
    expect(fresh.accept(transport(9, 1n, 64)), "the one after, remembered").to.equal(false);
  });

  it("still refuses a replay of a receiver's message when taking it pushed that receiver's only older counter out", function () {
    const fresh = new FreshMessages();
    // Receiver 5's one counter is the oldest of a full ring (a quiet session amid a flood).
    expect(fresh.accept(transport(5, 0n, 64))).to.equal(true);
    for (let i = 1n; i < 32_768n; i++) fresh.accept(transport(6, i, 64));
    expect(fresh.accept(transport(5, 1n, 64)), "its next message").to.equal(true);
    expect(fresh.accept(transport(5, 1n, 64)), "the same message again").to.equal(false);
  });
});
