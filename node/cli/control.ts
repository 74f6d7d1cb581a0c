import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { MystError } from "../errors/MystError";

/**
 * The control socket of a running `myst connect`: `<data-dir>/consumer.sock`, mode 0600, so only
 * its user can ask for the status or disconnect. HTTP over a unix socket.
 */
export function controlSocketPath(dataDir: string): string {
  return path.join(dataDir, "consumer.sock");
}

export function serveControl(
  socket: string,
  handlers: { status: () => unknown; disconnect: () => Promise<unknown> },
): Promise<http.Server> {
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  if (fs.existsSync(socket)) {
    // A stale socket from a process that died; a live one answers and we refuse to start.
    fs.rmSync(socket, { force: true });
  }
  const server = http.createServer(async (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
    };
    try {
      if (req.method === "GET" && req.url === "/status") return send(200, handlers.status());
      if (req.method === "POST" && req.url === "/disconnect") return send(200, await handlers.disconnect());
      send(404, { code: "NOT_FOUND", message: "no such control request" });
    } catch (err) {
      send(500, { code: (err as MystError).code ?? "INTERNAL", message: (err as Error).message });
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socket, () => {
      fs.chmodSync(socket, 0o600);
      resolve(server);
    });
  });
}

export async function askControl(socket: string, method: "GET" | "POST", route: string): Promise<unknown | null> {
  if (!fs.existsSync(socket)) return null;
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: route, timeout: 30_000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        try {
          const parsed = JSON.parse(body);
          if (res.statusCode !== 200) reject(new MystError(parsed.code ?? "CONTROL_FAILED", parsed.message ?? "control request failed"));
          else resolve(parsed);
        } catch (err) {
          reject(new MystError("CONTROL_FAILED", "the running myst connect answered something that is not JSON", { cause: err }));
        }
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNREFUSED" || err.code === "ENOENT" ? resolve(null) : reject(err)));
    req.end();
  });
}
