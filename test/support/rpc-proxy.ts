import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** How the proxy treats requests: pass them on, drop the connection, or never answer. */
export type ChainLink = "up" | "down" | "hang";

/**
 * A JSON-RPC proxy on 127.0.0.1 in front of a chain, to take the chain away from a node under
 * test: "down" resets every connection (a node that is gone), "hang" accepts and never answers
 * (a node that is stuck). Counts the requests it passes on.
 */
export class ChainProxy {
  link: ChainLink = "up";
  forwarded = 0;
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();

  constructor(private readonly target: string) {
    this.#server = http.createServer((req, res) => {
      if (this.link === "down") return void req.socket.destroy();
      if (this.link === "hang") return; // answered never; closed by stop()
      const chunks: Buffer[] = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        this.forwarded++;
        fetch(this.target, { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.concat(chunks) })
          .then(async (r) => {
            res.writeHead(r.status, { "content-type": "application/json" });
            res.end(Buffer.from(await r.arrayBuffer()));
          })
          .catch(() => req.socket.destroy());
      });
    });
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
