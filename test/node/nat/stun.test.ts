import dgram from "node:dgram";
import { expect } from "chai";
import {
  ATTR,
  appendFingerprint,
  appendIntegrity,
  BINDING,
  checkFingerprint,
  checkIntegrity,
  crc32,
  decodeErrorCode,
  decodeStunMessage,
  decodeXorAddress,
  encodeAddress,
  encodeStunMessage,
  encodeXorAddress,
  longTermKey,
  MAX_MESSAGE_BYTES,
  parseServer,
  type StunDropReason,
  type StunMessage,
  shortTermKey,
  stunBinding,
} from "../../../node/nat/stun";
import { rejectionOf } from "../../support/rejection";

/** Hex as RFC 5769 prints it (spaces and line breaks) to bytes. */
const hex = (text: string) => Buffer.from(text.replace(/[^0-9a-f]/gi, ""), "hex");

// RFC 5769 §2.1–2.4, byte for byte.
const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);
const SAMPLE_IPV4_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);
const SAMPLE_IPV6_RESPONSE = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);
const SAMPLE_LONG_TERM_REQUEST = hex(`
  00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
  00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
  00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
  00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
  00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`);
const PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt";

const attr = (m: StunMessage, type: number) => m.attributes.find((a) => a.type === type)?.value;

describe("STUN messages (RFC 8489) against RFC 5769's test vectors", function () {
  it("computes the CRC-32 every implementation publishes for '123456789'", function () {
    expect(crc32(Buffer.from("123456789"))).to.equal(0xcbf43926);
  });

  it("reads the sample request: a Binding request whose FINGERPRINT and short-term MESSAGE-INTEGRITY check", function () {
    const m = decodeStunMessage(SAMPLE_REQUEST);
    expect([m.method, m.cls]).to.deep.equal([BINDING, "request"]);
    expect(m.transactionId.toString("hex")).to.equal("b7e7a701bc34d686fa87dfae");
    expect(attr(m, ATTR.SOFTWARE)!.toString()).to.equal("STUN test client");
    expect(attr(m, ATTR.USERNAME)!.toString()).to.equal("evtj:h6vY");
    expect(checkFingerprint(m)).to.equal(true);
    expect(checkIntegrity(m, shortTermKey(PASSWORD))).to.equal(true);
    expect(checkIntegrity(m, shortTermKey("not the password"))).to.equal(false);
  });

  for (const [name, vector, address] of [
    ["IPv4", SAMPLE_IPV4_RESPONSE, "192.0.2.1"],
    ["IPv6", SAMPLE_IPV6_RESPONSE, "2001:db8:1234:5678:11:2233:4455:6677"],
  ] as const) {
    it(`reads the sample ${name} response: XOR-MAPPED-ADDRESS ${address} port 32853, integrity and fingerprint check`, function () {
      const m = decodeStunMessage(vector);
      expect([m.method, m.cls]).to.deep.equal([BINDING, "success"]);
      expect(decodeXorAddress(attr(m, ATTR.XOR_MAPPED_ADDRESS)!, m.transactionId)).to.deep.equal({ family: name === "IPv4" ? 4 : 6, address, port: 32853 });
      expect(checkFingerprint(m)).to.equal(true);
      expect(checkIntegrity(m, shortTermKey(PASSWORD))).to.equal(true);
    });

    it(`writes the sample ${name} response byte for byte (its SOFTWARE padded with a space, as the RFC's)`, function () {
      const transactionId = vector.subarray(8, 20);
      const mapped = { family: (name === "IPv4" ? 4 : 6) as 4 | 6, address, port: 32853 };
      const base = encodeStunMessage({
        method: BINDING,
        cls: "success",
        transactionId,
        attributes: [
          { type: ATTR.SOFTWARE, value: Buffer.from("test vector") },
          { type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress(mapped, transactionId) },
        ],
      });
      base[20 + 4 + 11] = 0x20; // the RFC's padding byte
      const ours = appendFingerprint(appendIntegrity(base, shortTermKey(PASSWORD)));
      expect(ours.toString("hex")).to.equal(vector.toString("hex"));
    });
  }

  it("encodes a response whose integrity and fingerprint check, and decodes what it encoded", function () {
    const transactionId = Buffer.from("000102030405060708090a0b", "hex");
    const key = shortTermKey(PASSWORD);
    const bytes = encodeStunMessage(
      {
        method: BINDING,
        cls: "success",
        transactionId,
        attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ family: 4, address: "198.18.3.2", port: 40000 }, transactionId) }],
      },
      { integrityKey: key, fingerprint: true },
    );
    const m = decodeStunMessage(bytes);
    expect(checkIntegrity(m, key)).to.equal(true);
    expect(checkFingerprint(m)).to.equal(true);
    expect(decodeXorAddress(attr(m, ATTR.XOR_MAPPED_ADDRESS)!, transactionId)).to.deep.equal({ family: 4, address: "198.18.3.2", port: 40000 });
  });

  it("checks the long-term sample request under MD5(username:realm:password), and not under another password", function () {
    const m = decodeStunMessage(SAMPLE_LONG_TERM_REQUEST);
    const username = attr(m, ATTR.USERNAME)!.toString("utf8");
    expect(username).to.equal("\u30de\u30c8\u30ea\u30c3\u30af\u30b9");
    expect(attr(m, ATTR.REALM)!.toString()).to.equal("example.org");
    expect(attr(m, ATTR.NONCE)!.toString()).to.equal("f//499k954d6OL34oL9FSTvy64sA");
    expect(checkFingerprint(m)).to.equal(undefined);
    expect(checkIntegrity(m, longTermKey(username, "example.org", "TheMatrIX"))).to.equal(true);
    expect(checkIntegrity(m, longTermKey(username, "example.org", "TheMatrix"))).to.equal(false);
  });

  it("finds a changed byte through the FINGERPRINT", function () {
    const bytes = Buffer.from(SAMPLE_REQUEST);
    bytes[30] ^= 1;
    expect(checkFingerprint(decodeStunMessage(bytes))).to.equal(false);
  });

  describe("refuses what is not exactly one well-formed message", function () {
    const cases: [string, (b: Buffer) => Buffer][] = [
      ["shorter than a header", (b) => b.subarray(0, 19)],
      ["a wrong magic cookie", (b) => ((b[4] ^= 1), b)],
      ["the first two bits set (not STUN)", (b) => ((b[0] |= 0x80), b)],
      ["a length past the datagram", (b) => (b.writeUInt16BE(0x5c, 2), b)],
      ["a length shorter than the datagram", (b) => Buffer.concat([b, Buffer.alloc(4)])],
      ["a length not a multiple of 4", (b) => (b.writeUInt16BE(0x57, 2), b)],
      ["an attribute past the message", (b) => (b.writeUInt16BE(0x4000, 22), b)],
      [
        "an attribute after FINGERPRINT",
        (b) => {
          const extra = Buffer.from("80220004746573740000", "hex").subarray(0, 8);
          const out = Buffer.concat([b, extra]);
          out.writeUInt16BE(out.length - 20, 2);
          return out;
        },
      ],
      [
        "more than the largest answer read",
        () => {
          const out = Buffer.alloc(MAX_MESSAGE_BYTES + 4);
          Buffer.from(SAMPLE_REQUEST.subarray(0, 20)).copy(out);
          out.writeUInt16BE(out.length - 20, 2);
          out.writeUInt16BE(0x8022, 20);
          out.writeUInt16BE(out.length - 24, 22);
          return out;
        },
      ],
    ];
    for (const [what, damage] of cases) {
      it(`a message with ${what}`, function () {
        expect(() => decodeStunMessage(damage(Buffer.from(SAMPLE_REQUEST))))
          .to.throw()
          .with.property("code", "STUN_MALFORMED");
      });
    }
  });

  it("reads ERROR-CODE as class × 100 + number", function () {
    expect(decodeErrorCode(Buffer.from([0, 0, 4, 38, 0x53, 0x74, 0x61, 0x6c, 0x65]))).to.deep.equal({ code: 438, reason: "Stale" });
  });

  it("parses STUN server settings, with 3478 as the default port", function () {
    expect(parseServer("stun.example.org")).to.deep.equal({ host: "stun.example.org", port: 3478 });
    expect(parseServer("198.18.2.2:3479")).to.deep.equal({ host: "198.18.2.2", port: 3479 });
    expect(parseServer("[2001:db8::1]:3478")).to.deep.equal({ host: "2001:db8::1", port: 3478 });
    for (const bad of ["", "host:0", "host:99999", "a:b:c", "[::1"])
      expect(() => parseServer(bad), bad)
        .to.throw()
        .with.property("code", "STUN_MALFORMED");
  });
});

/** A STUN server on 127.0.0.1 whose answers the test writes. */
async function scriptedServer(answer: (request: StunMessage, from: dgram.RemoteInfo, reply: (b: Buffer, port?: number) => void) => void) {
  const server = dgram.createSocket("udp4");
  const requests: StunMessage[] = [];
  server.on("message", (b, from) => {
    const request = decodeStunMessage(b);
    requests.push(request);
    answer(request, from, (reply, port) => server.send(reply, port ?? from.port, from.address));
  });
  await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
  return { address: "127.0.0.1", port: server.address().port, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

function success(transactionId: Buffer, mapped: { address: string; port: number }, extra: { fingerprint?: boolean } = {}): Buffer {
  return encodeStunMessage(
    {
      method: BINDING,
      cls: "success",
      transactionId,
      attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ family: 4, ...mapped }, transactionId) }],
    },
    { fingerprint: extra.fingerprint ?? true },
  );
}

describe("a STUN Binding from the caller's own socket", function () {
  let client: dgram.Socket;
  beforeEach(async function () {
    client = dgram.createSocket("udp4");
    await new Promise<void>((r) => client.bind(0, "127.0.0.1", r));
  });
  afterEach(function () {
    client.close();
  });

  it("returns the address the server saw, with the server's OTHER-ADDRESS, from a request with a FINGERPRINT", async function () {
    const server = await scriptedServer((req, from, reply) => {
      const other = { type: ATTR.OTHER_ADDRESS, value: encodeAddress({ family: 4, address: "198.18.2.3", port: 3479 }) };
      const mapped = { type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress({ family: 4, address: from.address, port: from.port }, req.transactionId) };
      reply(encodeStunMessage({ method: BINDING, cls: "success", transactionId: req.transactionId, attributes: [mapped, other] }, { fingerprint: true }));
    });
    try {
      const result = await stunBinding(client, server);
      expect(result.mapped).to.deep.equal({ family: 4, address: "127.0.0.1", port: client.address().port });
      expect(result.otherAddress).to.deep.equal({ family: 4, address: "198.18.2.3", port: 3479 });
      expect(checkFingerprint(server.requests[0])).to.equal(true);
      expect(client.listenerCount("message")).to.equal(0);
    } finally {
      await server.close();
    }
  });

  it("retransmits the same transaction until the server answers", async function () {
    const server = await scriptedServer((req, _from, reply) => {
      if (server.requests.length === 3) reply(success(req.transactionId, { address: "198.18.3.2", port: 1234 }));
    });
    try {
      const result = await stunBinding(client, server, { rtoMs: 10 });
      expect(result.requestsSent).to.equal(3);
      expect(new Set(server.requests.map((r) => r.transactionId.toString("hex"))).size).to.equal(1);
      expect(result.mapped.port).to.equal(1234);
    } finally {
      await server.close();
    }
  });

  it("gives up after RFC 8489's Rc requests with STUN_TIMEOUT", async function () {
    const server = await scriptedServer(() => {});
    try {
      const err = await rejectionOf(stunBinding(client, server, { rtoMs: 5, requests: 3, lastWaitFactor: 2 }));
      expect(err.code).to.equal("STUN_TIMEOUT");
      expect(server.requests).to.have.length(3);
    } finally {
      await server.close();
    }
  });

  it("drops forged, foreign, oversized, malformed and badly fingerprinted answers, and takes the real one", async function () {
    const drops: StunDropReason[] = [];
    const server = await scriptedServer((req, _from, reply) => {
      const id = req.transactionId;
      reply(success(Buffer.alloc(12, 7), { address: "6.6.6.6", port: 666 })); // another transaction's
      const big = Buffer.concat([success(id, { address: "6.6.6.6", port: 666 }, { fingerprint: false }), Buffer.alloc(MAX_MESSAGE_BYTES)]);
      big.writeUInt16BE(big.length - 20, 2);
      reply(big); // oversized
      const bad = success(id, { address: "6.6.6.6", port: 666 });
      bad[bad.length - 1] ^= 1; // its FINGERPRINT no longer checks
      reply(bad);
      const cut = success(id, { address: "6.6.6.6", port: 666 }).subarray(0, 30); // truncated
      reply(cut);
      reply(Buffer.from("hello, not STUN at all"));
      reply(success(id, { address: "198.18.3.2", port: 40000 }));
    });
    try {
      const result = await stunBinding(client, server, { onDrop: (reason) => drops.push(reason) });
      expect(result.mapped).to.deep.equal({ family: 4, address: "198.18.3.2", port: 40000 });
      expect(drops).to.deep.equal(["foreign-transaction", "too-large", "bad-fingerprint", "malformed", "not-stun"]);
    } finally {
      await server.close();
    }
  });

  it("drops an answer with its transaction id that comes from somewhere else than the server", async function () {
    const drops: StunDropReason[] = [];
    const forger = dgram.createSocket("udp4");
    await new Promise<void>((r) => forger.bind(0, "127.0.0.1", r));
    const server = await scriptedServer((req, _from, reply) => {
      forger.send(success(req.transactionId, { address: "6.6.6.6", port: 666 }), client.address().port, "127.0.0.1");
      setTimeout(() => reply(success(req.transactionId, { address: "198.18.3.2", port: 40001 })), 20);
    });
    try {
      const result = await stunBinding(client, server, { onDrop: (reason) => drops.push(reason) });
      expect(result.mapped.address).to.equal("198.18.3.2");
      expect(drops).to.deep.equal(["wrong-source"]);
    } finally {
      forger.close();
      await server.close();
    }
  });

  it("rejects with the server's error code when it answers an error", async function () {
    const server = await scriptedServer((req, _from, reply) => {
      const code = Buffer.concat([Buffer.from([0, 0, 4, 20]), Buffer.from("Unknown Attribute")]);
      reply(encodeStunMessage({ method: BINDING, cls: "error", transactionId: req.transactionId, attributes: [{ type: ATTR.ERROR_CODE, value: code }] }));
    });
    try {
      const err = await rejectionOf(stunBinding(client, server));
      expect(err.code).to.equal("STUN_ERROR_RESPONSE");
      expect(err.message).to.include("420 Unknown Attribute");
    } finally {
      await server.close();
    }
  });

  it("asks for another address and port with CHANGE-REQUEST and takes the answer from there", async function () {
    const other = dgram.createSocket("udp4");
    await new Promise<void>((r) => other.bind(0, "127.0.0.1", r));
    const server = await scriptedServer((req, from) => {
      const change = req.attributes.find((a) => a.type === ATTR.CHANGE_REQUEST)!.value.readUInt32BE(0);
      if (change === 0x6) other.send(success(req.transactionId, { address: from.address, port: from.port }), from.port, from.address);
    });
    try {
      const result = await stunBinding(client, server, { change: { ip: true, port: true } });
      expect(result.from.port).to.equal(other.address().port);
    } finally {
      other.close();
      await server.close();
    }
  });

  it("stops when its signal is aborted", async function () {
    const server = await scriptedServer(() => {});
    try {
      const err = await rejectionOf(stunBinding(client, server, { signal: AbortSignal.timeout(30) }));
      expect(err.code).to.equal("STUN_ABORTED");
      expect(client.listenerCount("message")).to.equal(0);
    } finally {
      await server.close();
    }
  });
});
