import { expect } from "chai";
import crypto from "node:crypto";
import zlib from "node:zlib";
import { channelKeys, newSecret } from "../../../node/nat/direct/keys";
import { MAX_DATAGRAM, openPacket, PacketType, ReplayWindow, sealPacket, type DirectionKey } from "../../../node/nat/direct/packet";

/**
 * What an attacker on the path can do with the channel's datagrams, without the session's secrets:
 * alter a captured one (and fix up any checksum), make one up, send it again, send a huge one.
 * The same attacks run against a naive codec (a CRC32 over the payload, as Mysterium's UDP control
 * channel has) to show the checks have teeth: there, the forgeries pass.
 */
interface Codec {
  seal(type: number, seq: bigint, payload: Buffer): Buffer;
  open(datagram: Buffer): { payload: Buffer } | { drop: string };
  /** What an attacker does to a captured datagram to make it say `payload` instead. */
  forge(captured: Buffer, payload: Buffer): Buffer;
}

function sealed(k: DirectionKey): Codec {
  return {
    seal: (type, seq, payload) => sealPacket(k, type as PacketType, seq, payload),
    open: (d) => openPacket(k, d),
    forge: (captured, payload) => {
      // Same header (so the receiver tag matches), the ciphertext XORed toward the wanted payload
      // as if the keystream were known for the plaintext... the tag cannot be fixed without the key.
      const out = Buffer.from(captured);
      for (let i = 0; i < payload.length && 18 + i < out.length - 16; i++) out[18 + i] ^= payload[i];
      return out;
    },
  };
}

const naiveCrc: Codec = {
  seal: (type, seq, payload) => {
    const head = Buffer.alloc(10);
    head[0] = type;
    head.writeBigUInt64BE(seq, 1);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(payload));
    return Buffer.concat([head, payload, crc]);
  },
  open: (d) => {
    const payload = d.subarray(10, d.length - 4);
    return d.readUInt32BE(d.length - 4) === zlib.crc32(payload) ? { payload } : { drop: "checksum" };
  },
  forge: (captured, payload) => {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(payload));
    return Buffer.concat([captured.subarray(0, 10), payload, crc]);
  },
};

function forgeriesAccepted(codec: Codec): number {
  const captured = codec.seal(PacketType.data, 7n, Buffer.from("promise 100"));
  const attempts = [codec.forge(captured, Buffer.from("promise 999")), codec.forge(captured, Buffer.from("destroy!!!!"))];
  return attempts.filter((d) => !("drop" in codec.open(d))).length;
}

describe("direct channel datagrams: sealed, so forged, altered, replayed and oversized ones are dropped", function () {
  const keys = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret());
  const k = keys.consumerToProvider;

  it("opens what the peer sealed, with its type, sequence and payload", function () {
    const opened = openPacket(k, sealPacket(k, PacketType.data, 42n, Buffer.from("hello")));
    expect(opened).to.deep.include({ type: PacketType.data, seq: 42n });
    expect((opened as { payload: Buffer }).payload.toString()).to.equal("hello");
  });

  it("drops an altered datagram (the naive CRC codec takes the same forgery)", function () {
    expect(forgeriesAccepted(sealed(k))).to.equal(0);
    expect(forgeriesAccepted(naiveCrc)).to.equal(2);
  });

  it("drops a datagram sealed with the other direction's key or another session's", function () {
    const other = channelKeys(crypto.randomBytes(16).toString("hex"), newSecret(), newSecret()).consumerToProvider;
    expect(openPacket(k, sealPacket(keys.providerToConsumer, PacketType.probe, 1n, Buffer.alloc(9)))).to.deep.equal({ drop: "unknown-receiver" });
    // A stranger who copies our receiver tag still cannot seal for us.
    const stolenTag = sealPacket({ key: other.key, tag: k.tag }, PacketType.probe, 1n, Buffer.alloc(9));
    expect(openPacket(k, stolenTag)).to.deep.equal({ drop: "forged" });
  });

  it("drops a made-up datagram with a valid-looking header", function () {
    const header = sealPacket(k, PacketType.probe, 5n, Buffer.alloc(9)).subarray(0, 18);
    expect(openPacket(k, Buffer.concat([header, crypto.randomBytes(9 + 16)]))).to.deep.equal({ drop: "forged" });
  });

  it("drops an oversized datagram unread, and refuses to seal one", function () {
    expect(openPacket(k, Buffer.alloc(MAX_DATAGRAM + 1, 0xd1))).to.deep.equal({ drop: "oversized" });
    expect(() => sealPacket(k, PacketType.data, 1n, Buffer.alloc(MAX_DATAGRAM))).to.throw(RangeError);
  });

  it("drops junk and truncated datagrams as malformed", function () {
    expect(openPacket(k, Buffer.from("GET / HTTP/1.1"))).to.deep.equal({ drop: "malformed" });
    expect(openPacket(k, sealPacket(k, PacketType.data, 1n, Buffer.from("x")).subarray(0, 20))).to.deep.equal({ drop: "malformed" });
  });

  describe("the replay window", function () {
    it("takes each sequence once, in any order within the window", function () {
      const w = new ReplayWindow(64);
      expect([5n, 3n, 4n, 5n, 3n, 70n, 7n, 6n, 69n].map((s) => w.accept(s))).to.deep.equal([true, true, true, false, false, true, true, false, true]);
    });

    it("refuses what fell out of the window, and what was seen before the window moved", function () {
      const w = new ReplayWindow(64);
      for (let s = 0n; s < 200n; s++) expect(w.accept(s)).to.equal(true);
      expect(w.accept(100n)).to.equal(false);
      expect(w.accept(199n)).to.equal(false);
      expect(w.accept(150n)).to.equal(false);
      expect(w.accept(1000n)).to.equal(true);
      expect(w.accept(990n)).to.equal(true);
      expect(w.accept(990n)).to.equal(false);
    });
  });
});
