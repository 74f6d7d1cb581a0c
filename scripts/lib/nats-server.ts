import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { freePort, stopChild } from "./local-chain";

export interface NatsServer {
  url: string;
  port: number;
  clusterPort: number;
  pid: number;
  stop(): Promise<void>;
  /** Starts it again on the same ports (after stop). */
  restart(): Promise<void>;
}

export interface NatsServerOptions {
  /** Routes to other servers' cluster ports, to form a cluster. */
  routes?: number[];
  /** Reuse these ports (e.g. to restart). */
  port?: number;
  clusterPort?: number;
  /** Serve the HTTP monitoring endpoints (/connz, /subsz) on this loopback port. */
  monitorPort?: number;
}

export const NATS_SERVER_BIN = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => fs.existsSync(p));

/** Starts a real nats-server on 127.0.0.1 (and a cluster listener, also on loopback). */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  if (!NATS_SERVER_BIN) throw new Error("nats-server is not installed (run scripts/install.sh)");
  const port = options.port ?? (await freePort());
  const clusterPort = options.clusterPort ?? (await freePort());
  let child: ChildProcess;
  const launch = async () => {
    const args = ["-a", "127.0.0.1", "-p", String(port), "--cluster", `nats://127.0.0.1:${clusterPort}`, "--cluster_name", "myst"];
    if (options.monitorPort) args.push("-m", String(options.monitorPort));
    if (options.routes?.length) args.push("--routes", options.routes.map((p) => `nats://127.0.0.1:${p}`).join(","));
    child = spawn(NATS_SERVER_BIN!, args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.resume();
    await waitForPort(port, 10_000, child);
  };
  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    clusterPort,
    get pid() {
      return child.pid!;
    },
    stop: () => stopChild(child),
    restart: launch,
  };
}

async function waitForPort(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode} (port ${port} in use?)`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nats-server did not listen on ${port} within ${timeoutMs} ms`);
}
