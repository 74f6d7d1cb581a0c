import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { JsonRpcProvider } from "ethers";
import { rpcRequest } from "../../../node/chain/rpc-request";

/**
 * A JSON-RPC server that closes a kept-alive connection the moment a second call arrives on it:
 * what a client sees when the server's keep-alive timeout fires just as the client reuses the
 * connection (the api.test set-up's "socket hang up" at load 16).
 */
async function closingServer(): Promise<{ url: string; calls: () => number; close: () => Promise<void> }> {
  let calls = 0;
  const served = new WeakMap<object, number>();
  const server = http.createServer((req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n > 1) {
      req.socket.destroy();
      return;
    }
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      calls++;
      const { id } = JSON.parse(body);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ jsonrpc: "2.0", id, result: "0x2a" }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls: () => calls, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("JSON-RPC over a kept-alive connection the node closes", function () {
  it("sends the call again on a fresh connection instead of failing with 'socket hang up'", async function () {
    const server = await closingServer();
    const rpc = new JsonRpcProvider(rpcRequest(server.url), 31337, { staticNetwork: true, cacheTimeout: -1 });
    try {
      expect(await rpc.send("eth_blockNumber", [])).to.equal("0x2a");
      expect(await rpc.send("eth_blockNumber", [])).to.equal("0x2a");
      expect(server.calls()).to.equal(2);
    } finally {
      rpc.destroy();
      await server.close();
    }
  });

  it("still fails, with the server's answer, when the server is gone", async function () {
    const server = await closingServer();
    await server.close();
    const rpc = new JsonRpcProvider(rpcRequest(server.url, 2_000), 31337, { staticNetwork: true });
    try {
      await rpc.send("eth_blockNumber", []).then(
        () => expect.fail("answered with no server"),
        (err: Error) => expect(String(err)).to.match(/ECONNREFUSED/),
      );
    } finally {
      rpc.destroy();
    }
  });
});
