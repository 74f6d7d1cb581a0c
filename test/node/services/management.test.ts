import { expect } from "chai";
import net from "node:net";
import path from "node:path";
import { ManagementClient } from "../../../node/services/openvpn/management";
import { rejectionOf } from "../../support/rejection";
import { tempDir } from "../../../scripts/lib/tmp";

/** A stand-in for openvpn's management socket: records what arrives, one entry per read. */
async function fakeOpenvpn(answer: (command: string) => string) {
  const tmp = tempDir();
  const socketPath = path.join(tmp.dir, "management.sock");
  const reads: string[] = [];
  const peers: net.Socket[] = [];
  const server = net.createServer((socket) => {
    peers.push(socket);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reads.push(chunk);
      for (const command of chunk.split("\n").filter(Boolean)) socket.write(answer(command));
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    reads,
    send: (text: string) => peers[0].write(text),
    stop: async () => {
      for (const p of peers) p.destroy();
      await new Promise((resolve) => server.close(resolve));
      tmp.cleanup();
    },
  };
}

describe("openvpn management client (against a fake management socket)", function () {
  it("sends several commands in one write and answers each in order, refusals included", async function () {
    const fake = await fakeOpenvpn((c) => (c.startsWith("client-pending-auth") ? "ERROR: unknown command\n" : `SUCCESS: ${c} done\n`));
    const client = new ManagementClient();
    try {
      await client.connect(fake.socketPath);
      expect(await client.commands(["client-auth-nt 3 1", "state on"])).to.deep.equal([["client-auth-nt 3 1 done"], ["state on done"]]);
      expect(fake.reads).to.deep.equal(["client-auth-nt 3 1\nstate on\n"]);
      const err = await rejectionOf(client.commands(["client-pending-auth 3 1 x 60", "client-auth-nt 3 1"]));
      expect(err.code).to.equal("MANAGEMENT_COMMAND_FAILED");
      expect(err.message).to.include("client-pending-auth");
      // The refusal did not unsettle the queue: the next answer goes to the next command.
      expect(await client.command("status")).to.deep.equal(["status done"]);
    } finally {
      client.close();
      await fake.stop();
    }
  });

  it("turns a client block into one event, and refuses commands once the socket is closed", async function () {
    const fake = await fakeOpenvpn((c) => `SUCCESS: ${c}\n`);
    const client = new ManagementClient();
    try {
      await client.connect(fake.socketPath);
      const block = new Promise((resolve) => client.once("client", resolve));
      fake.send(">CLIENT:CONNECT,7,2\n>CLIENT:ENV,username=abc\n>CLIENT:ENV,password=x=y\n>CLIENT:ENV,END\n");
      expect(await block).to.deep.equal({ kind: "CONNECT", cid: 7, kid: 2, env: { username: "abc", password: "x=y" } });
      client.close();
      expect((await rejectionOf(client.commands(["status"]))).code).to.equal("MANAGEMENT_CLOSED");
    } finally {
      await fake.stop();
    }
  });
});
