import dgram from "node:dgram";
import { expect } from "chai";
import { decodePcpMap, encodePcpMap, PCP_PORT, pcpMap } from "../../../node/nat/pcp";

const nonce = Buffer.from("0102030405060708090a0b0c", "hex");

/** A MAP response laid out by hand from RFC 6887 §7.2 and §11.1 (not by the code under test). */
function response(o: { result?: number; nonce?: Buffer; port?: number; address?: number[]; version?: number; opcode?: number }): Buffer {
  const b = Buffer.alloc(60);
  b[0] = o.version ?? 2;
  b[1] = o.opcode ?? 0x81; // R = 1, MAP
  b[3] = o.result ?? 0;
  b.writeUInt32BE(7200, 4); // lifetime
  b.writeUInt32BE(1234, 8); // epoch
  (o.nonce ?? nonce).copy(b, 24);
  b[36] = 17; // UDP
  b.writeUInt16BE(40000, 40); // internal port
  b.writeUInt16BE(o.port ?? 50000, 42); // assigned external port
  b.writeUInt16BE(0xffff, 54);
  Buffer.from(o.address ?? [11, 3, 0, 2]).copy(b, 56);
  return b;
}

/** A fake router on a loopback address of its own, answering each request with `answer(request)` (or nothing). */
async function router(answer: (request: Buffer) => Buffer[] | undefined) {
  const address = `127.0.${Math.floor(Math.random() * 200) + 20}.${Math.floor(Math.random() * 200) + 20}`;
  const socket = dgram.createSocket("udp4");
  const requests: Buffer[] = [];
  socket.on("message", (b, from) => {
    requests.push(b);
    for (const a of answer(b) ?? []) socket.send(a, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(PCP_PORT, address, resolve));
  return { address, requests, close: () => socket.close() };
}

describe("PCP MAP (RFC 6887)", function () {
  it("lays a request out as §7.1 and §11.1 say", function () {
    const b = encodePcpMap({ client: "192.168.1.20", protocol: "udp", internalPort: 40000, suggestedPort: 40001, lifetimeS: 7200, nonce });
    expect(b.length).to.equal(60);
    expect(b[0], "version").to.equal(2);
    expect(b[1], "R = 0, opcode MAP").to.equal(1);
    expect(b.readUInt32BE(4), "lifetime").to.equal(7200);
    expect(b.subarray(8, 24).toString("hex"), "client address, IPv4-mapped").to.equal("00000000000000000000ffffc0a80114");
    expect(b.subarray(24, 36).equals(nonce)).to.equal(true);
    expect(b[36], "protocol").to.equal(17);
    expect(b.subarray(37, 40).toString("hex"), "reserved").to.equal("000000");
    expect(b.readUInt16BE(40)).to.equal(40000);
    expect(b.readUInt16BE(42)).to.equal(40001);
    expect(b.subarray(44, 60).toString("hex"), "no external address asked for").to.equal("00000000000000000000ffff00000000");
  });

  it("reads a response, and nothing that is not a version-2 MAP response", function () {
    const r = decodePcpMap(response({}))!;
    expect(r).to.include({ result: 0, lifetimeS: 7200, epoch: 1234, protocol: 17, internalPort: 40000, externalPort: 50000, externalAddress: "11.3.0.2" });
    expect(r.nonce.equals(nonce)).to.equal(true);
    expect(decodePcpMap(response({}).subarray(0, 59)), "short").to.equal(undefined);
    expect(decodePcpMap(response({ version: 0 })), "NAT-PMP").to.equal(undefined);
    expect(decodePcpMap(response({ opcode: 0x01 })), "a request, not a response").to.equal(undefined);
    expect(decodePcpMap(response({ opcode: 0x82 })), "PEER, not MAP").to.equal(undefined);
  });

  it("maps through a router that answers, ignoring answers to other nonces", async function () {
    const r = await router(() => [response({ nonce: Buffer.alloc(12, 9), port: 1 }), response({})]);
    try {
      const m = await pcpMap(r.address, { client: "127.0.0.1", protocol: "udp", internalPort: 40000, suggestedPort: 40000, lifetimeS: 7200, nonce }, 3000);
      expect(m).to.include({ externalPort: 50000, externalAddress: "11.3.0.2", lifetimeS: 7200 });
      expect(r.requests[0].subarray(8, 24).toString("hex"), "the client's own address").to.equal("00000000000000000000ffff7f000001");
    } finally {
      r.close();
    }
  });

  it("says why when the router refuses: its result code in words, or that it speaks NAT-PMP only", async function () {
    const refusing = await router(() => [response({ result: 2 })]);
    const natPmp = await router(() => [Buffer.from([0, 0x81, 0, 1, 0, 0, 0, 0])]);
    try {
      const ask = (gateway: string) =>
        pcpMap(gateway, { client: "127.0.0.1", protocol: "udp", internalPort: 40000, suggestedPort: 40000, lifetimeS: 60, nonce }, 3000).then(
          () => expect.fail("mapped"),
          (err: Error) => err.message,
        );
      expect(await ask(refusing.address)).to.equal("not authorized");
      expect(await ask(natPmp.address)).to.match(/unsupported version \(the router speaks NAT-PMP, not PCP\)/);
    } finally {
      refusing.close();
      natPmp.close();
    }
  });

  it("resends while the router is silent, then gives up with 'no answer'", async function () {
    const silent = await router(() => undefined);
    try {
      const err = await pcpMap(
        silent.address,
        { client: "127.0.0.1", protocol: "udp", internalPort: 40000, suggestedPort: 0, lifetimeS: 60, nonce },
        1200,
      ).catch((e: Error) => e);
      expect((err as Error).message).to.equal("no answer");
      expect(silent.requests.length, "sent at 0, 250 and 750 ms").to.equal(3);
    } finally {
      silent.close();
    }
  });
});
