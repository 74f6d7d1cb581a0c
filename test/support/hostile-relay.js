// A hostile relay for the tests (test/e2e/relay-hostile.test.ts, test/node/services/relay.test.ts):
// a UDP proxy in front of a real coturn that passes TURN between its clients and coturn, and on
// command tampers with what it carries: "flip" flips a byte in every fourth ChannelData frame
// (both ways) and sends the client junk frames (an unknown channel, a wrong length, garbage, a
// payload that is no WireGuard message); "replay" sends every ChannelData frame to the client
// three times (now, again, and once more 50 frames later) and every one to coturn twice; "drop"
// drops everything; "forge" sends the client, after each ChannelData frame, two frames of its own
// making on the same channel that pass every test but WireGuard's: transport messages to the same
// receiver with fresh random counters and random ciphertext; "pass" carries everything unchanged.
// It counts what it passed unchanged (`genuine`, bytes of the datagrams coturn and the client
// really exchanged) apart from what it made up (`junk`, `replayed`, `forged`).
//
// In a test's namespace (the relay's machine): node hostile-relay.js <listen-port> <coturn-address> <coturn-port>
// (an nft redirect sends the relay's public TURN port to <listen-port>), then lines on stdin:
// "mode <pass|flip|replay|drop|forge>" (answered "mode <m>") and "stats" (answered with one JSON line).
const crypto = require("node:crypto");
const dgram = require("node:dgram");
const readline = require("node:readline");

const isChannelData = (b) => b.length >= 4 && b[0] >= 0x40 && b[0] <= 0x4f;

/** Starts the proxy on 127.0.0.1 or `host`; resolves when it listens. */
function startHostileRelay({ listenPort = 0, host = "0.0.0.0", upstream, mode = "pass" }) {
  const stats = { genuine: 0, genuineToClient: 0, genuineToCoturn: 0, flipped: 0, flippedBytes: 0, junk: 0, replayed: 0, forged: 0, dropped: 0 };
  const relay = { mode, stats, port: 0 };
  const front = dgram.createSocket("udp4");
  const clients = new Map();
  let frames = 0;

  const toClient = (c, msg) => front.send(msg, c.port, c.address);
  const toCoturn = (c, msg) => c.up.send(msg, upstream.port, upstream.address);

  /** One datagram on its way (`send`): what the mode does to it. */
  function carry(msg, send, towardClient, c) {
    const m = relay.mode;
    if (m === "drop") {
      stats.dropped += msg.length;
      return;
    }
    const data = isChannelData(msg) && msg.length > 36;
    if (m === "flip" && data && ++frames % 4 === 0) {
      const bad = Buffer.from(msg);
      bad[4 + Math.floor(Math.random() * (bad.length - 4))] ^= 0xff;
      stats.flipped++;
      stats.flippedBytes += bad.length;
      send(bad);
    } else {
      stats.genuine += msg.length;
      if (towardClient) stats.genuineToClient += msg.length;
      else stats.genuineToCoturn += msg.length;
      send(msg);
    }
    if (!data) return;
    if (m === "flip" && towardClient)
      for (const j of junkFor(msg)) {
        stats.junk += j.length;
        send(j);
      }
    if (m === "forge" && towardClient)
      for (const f of forgedFor(msg)) {
        stats.forged += f.length;
        send(f);
      }
    if (m === "replay") {
      send(msg);
      stats.replayed += msg.length;
      if (towardClient) {
        c.history.push(msg);
        if (c.history.length > 50) {
          const old = c.history.shift();
          stats.replayed += old.length;
          send(old);
        }
      }
    }
  }

  front.on("message", (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let c = clients.get(key);
    if (!c) {
      const up = dgram.createSocket("udp4");
      c = { address: from.address, port: from.port, up, history: [] };
      const client = c;
      up.on("message", (reply) => carry(reply, (b) => toClient(client, b), true, client));
      up.on("error", () => undefined);
      up.bind(0);
      clients.set(key, c);
    }
    const client = c;
    carry(msg, (b) => toCoturn(client, b), false, client);
  });
  front.on("error", () => undefined);
  return new Promise((resolve) =>
    front.bind(listenPort, host, () => {
      relay.port = front.address().port;
      relay.close = () => {
        for (const c of clients.values()) c.up.close();
        front.close();
      };
      resolve(relay);
    }),
  );
}

/** Frames that look like the relay's but are not valid for the session, made from a real one. */
function junkFor(frame) {
  const channel = frame.readUInt16BE(0);
  const size = frame.length;
  const unknownChannel = Buffer.from(frame);
  unknownChannel.writeUInt16BE(channel === 0x4ffe ? 0x4ffd : 0x4ffe, 0);
  const wrongLength = Buffer.from(frame);
  wrongLength.writeUInt16BE(size + 200, 2);
  const garbage = Buffer.alloc(size, 0x5a);
  garbage.writeUInt16BE(0x0017, 0);
  const notWireGuard = Buffer.from(frame);
  notWireGuard[4] = 0x09;
  return [unknownChannel, wrongLength, garbage, notWireGuard];
}

/**
 * Two WireGuard transport messages of the relay's making, in frames like `frame` (a ChannelData
 * frame carrying one): the same channel and receiver index, a fresh random counter, random
 * ciphertext. Only WireGuard's AEAD can tell them from the provider's.
 */
function forgedFor(frame) {
  const length = frame.readUInt16BE(2);
  if (length < 32 || frame[4] !== 4) return [];
  return [0, 1].map(() => {
    const forged = Buffer.from(frame);
    // From the counter (the message's bytes 8–15, the frame's 12–19) to the end: random.
    crypto.randomFillSync(forged, 12, 4 + length - 12);
    return forged;
  });
}

module.exports = { startHostileRelay };

if (require.main === module) {
  const [listenPort, address, port] = process.argv.slice(2);
  startHostileRelay({ listenPort: Number(listenPort), upstream: { address, port: Number(port) } }).then((relay) => {
    process.stdout.write(`listening ${relay.port}\n`);
    readline.createInterface({ input: process.stdin }).on("line", (line) => {
      const [command, arg] = line.trim().split(/\s+/);
      if (command === "mode" && ["pass", "flip", "replay", "drop", "forge"].includes(arg)) {
        relay.mode = arg;
        process.stdout.write(`mode ${arg}\n`);
      } else if (command === "stats") process.stdout.write(`${JSON.stringify(relay.stats)}\n`);
    });
  });
}
