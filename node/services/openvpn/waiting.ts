import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { silentLogger, type Logger } from "../../log/logger";
import { traced } from "../../log/connect-trace";
import { OpenVpnProcess } from "./process";

/** An openvpn started before its session is known, waiting for its config on a FIFO, and the names of the files it will use. */
export interface WaitingOpenVpn {
  process: OpenVpnProcess;
  files: { auth: string; socket: string };
  /** Resolves once the process is spawned (its FIFO being made by the same start); rejects when it could not be. */
  launched: Promise<void>;
  /** The namespace it runs in. */
  netns?: string;
}

/**
 * Starts an openvpn in `netns` (through the spawning helper, `setpriv`, `ip netns exec`) that waits for its config
 * on a 0600 FIFO in `runDir`: it carries nothing of a session (no config, no tun device, no socket) until
 * `configure` gives it one. Interchangeable: any connection in that namespace may take it.
 */
export function launchWaiting(o: { runDir: string; netns?: string; log?: Logger }): WaitingOpenVpn {
  fs.mkdirSync(o.runDir, { recursive: true, mode: 0o700 });
  const base = path.join(o.runDir, `openvpn-${crypto.randomBytes(8).toString("hex")}`);
  const files = { auth: `${base}.auth`, socket: `${base}.sock` };
  const process = new OpenVpnProcess({
    configFile: `${base}.conf`,
    configFifo: true,
    viaHelper: true,
    managementSocket: files.socket,
    netns: o.netns,
    log: o.log ?? silentLogger,
  });
  const launched = traced("openvpn: launched (FIFO made, process spawned)", process.launch());
  launched.catch(() => undefined); // the connect that takes it reports it
  return { process, files, launched, netns: o.netns };
}
