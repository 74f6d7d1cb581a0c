import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import dgram from "node:dgram";
import fs from "node:fs";
import { enlargeReceiveBuffers } from "../../../node/services/wireguard/socket-buffer";
import { sprayFromSocketOf } from "../../../node/services/wireguard/tunnel-spray";
import { until } from "../../../scripts/lib/until";

/**
 * A process holding a UDP socket, as wireguard-go holds its tunnel's, whose other descriptors come
 * and go all the time, as wireguard-go's do when its control socket is asked (one connection per
 * UAPI request: the consumer asks every 20 ms whether the provider's handshake came). Prints its port.
 */
const HOLDER = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    churn = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(1000)]
    for c in churn:
        c.close()
`;

// pidfd_getfd(2) on another process's socket needs root (or ptrace rights over it), as on a node.
const copyable = process.getuid?.() === 0 && fs.existsSync("/usr/bin/python3");

(copyable ? describe : describe.skip)("wireguard: copies of wireguard-go's UDP socket while its other descriptors come and go", function () {
  this.timeout(60_000);
  let holder: ChildProcess;
  let holderPort = 0;
  let receiver: dgram.Socket;
  const heard: { from: number; text: string }[] = [];

  before(async function () {
    holder = spawn("/usr/bin/python3", ["-c", HOLDER], { stdio: ["ignore", "pipe", "inherit"] });
    let printed = "";
    holder.stdout!.setEncoding("utf8").on("data", (d: string) => {
      printed += d;
      if (printed.includes("\n")) holderPort = Number(printed.trim());
    });
    await until(() => holderPort > 0, "the holder's port");
    receiver = dgram.createSocket("udp4");
    receiver.on("message", (m, r) => heard.push({ from: r.port, text: m.toString() }));
    await new Promise<void>((r) => receiver.bind(0, "127.0.0.1", () => r()));
  });

  after(function () {
    if (holder?.exitCode === null) holder.kill();
    receiver?.close();
  });

  it("the tunnel's spray leaves from the tunnel's socket every time, not failing on a descriptor closed while listed", async function () {
    for (let n = 0; n < 10; n++) {
      const datagrams = Array.from({ length: 8 }, (_, i) => ({ address: "127.0.0.1", port: receiver.address().port, bytes: Buffer.from(`spray ${n} ${i}`) }));
      await sprayFromSocketOf(holder.pid!, holderPort, datagrams);
      await until(() => heard.filter((h) => h.text.startsWith(`spray ${n} `)).length === 8, `spray ${n}'s 8 datagrams`);
    }
    expect(new Set(heard.map((h) => h.from))).to.deep.equal(new Set([holderPort]));
  });

  it("the receive buffer is enlarged every time, not failing on a descriptor closed while listed", async function () {
    for (let n = 0; n < 10; n++) expect(await enlargeReceiveBuffers(holder.pid!)).to.be.at.least(1);
  });
});
