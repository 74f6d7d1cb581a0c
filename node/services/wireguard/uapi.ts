import net from "node:net";
import path from "node:path";
import { keyFromHex } from "./keys";
import { TunnelError } from "../system";

/** Where wireguard-go puts an interface's control socket (shared by every network namespace). */
export const UAPI_DIR = "/var/run/wireguard";

export function uapiSocket(device: string): string {
  return path.join(UAPI_DIR, `${device}.sock`);
}

/** One peer as `get=1` reports it. */
export interface PeerState {
  publicKey: string;
  endpoint?: string;
  allowedIps: string[];
  /** Milliseconds since the epoch of the last completed handshake; 0: never. */
  lastHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
}

export interface DeviceState {
  listenPort?: number;
  peers: PeerState[];
}

/** A peer change for `set=1`; keys in base64 (converted to the UAPI's hex here). */
export interface PeerChange {
  publicKey: string;
  remove?: boolean;
  endpoint?: string;
  allowedIps?: string[];
  persistentKeepalive?: number;
}

const NUMBER = /^\d{1,20}$/;

/**
 * A client of WireGuard's cross-platform userspace API (the control socket of wireguard-go):
 * `set=1` with key=value lines, `get=1` answered with key=value lines, each ended by `errno=N`
 * and an empty line. One connection per operation; raw lines enter here and leave as typed values.
 */
export class WireGuardUapi {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {}

  async set(o: { privateKey?: string; listenPort?: number; replacePeers?: boolean; peers?: PeerChange[] }): Promise<void> {
    const lines = ["set=1"];
    if (o.privateKey !== undefined) lines.push(`private_key=${hex(o.privateKey)}`);
    if (o.listenPort !== undefined) lines.push(`listen_port=${o.listenPort}`);
    if (o.replacePeers) lines.push("replace_peers=true");
    for (const p of o.peers ?? []) {
      lines.push(`public_key=${hex(p.publicKey)}`);
      if (p.remove) {
        lines.push("remove=true");
        continue;
      }
      if (p.endpoint !== undefined) lines.push(`endpoint=${p.endpoint}`);
      if (p.persistentKeepalive !== undefined) lines.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
      if (p.allowedIps) {
        lines.push("replace_allowed_ips=true");
        for (const ip of p.allowedIps) lines.push(`allowed_ip=${ip}`);
      }
    }
    await this.#exchange(`${lines.join("\n")}\n\n`);
  }

  async get(): Promise<DeviceState> {
    const lines = await this.#exchange("get=1\n\n");
    const state: DeviceState = { peers: [] };
    let peer: PeerState | undefined;
    let seconds = 0;
    for (const line of lines) {
      const i = line.indexOf("=");
      const key = line.slice(0, i);
      const value = line.slice(i + 1);
      if (key === "public_key") {
        if (!/^[0-9a-f]{64}$/.test(value)) throw new TunnelError("UAPI_FAILED", "wireguard-go reported a malformed peer key");
        peer = { publicKey: keyFromHex(value), allowedIps: [], lastHandshakeMs: 0, rxBytes: 0, txBytes: 0 };
        state.peers.push(peer);
      } else if (key === "listen_port" && !peer && NUMBER.test(value)) state.listenPort = Number(value);
      else if (!peer) continue;
      else if (key === "endpoint") peer.endpoint = value;
      else if (key === "allowed_ip") peer.allowedIps.push(value);
      else if (key === "rx_bytes" && NUMBER.test(value)) peer.rxBytes = Number(value);
      else if (key === "tx_bytes" && NUMBER.test(value)) peer.txBytes = Number(value);
      else if (key === "last_handshake_time_sec" && NUMBER.test(value)) seconds = Number(value);
      else if (key === "last_handshake_time_nsec" && NUMBER.test(value)) peer.lastHandshakeMs = seconds * 1000 + Math.floor(Number(value) / 1e6);
    }
    return state;
  }

  /** Sends one request; resolves with the answer's lines (without `errno`), rejects on errno ≠ 0. */
  #exchange(request: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.socketPath);
      let buffer = "";
      const timer = setTimeout(() => fail(new TunnelError("UAPI_FAILED", `wireguard-go did not answer on ${this.socketPath}`)), this.timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.setEncoding("utf8");
      socket.once("connect", () => socket.write(request));
      socket.on("data", (chunk: string) => {
        buffer += chunk;
        const end = buffer.indexOf("\n\n");
        if (end < 0) return;
        clearTimeout(timer);
        socket.end();
        const lines = buffer.slice(0, end).split("\n");
        const errno = lines.pop() ?? "";
        // wireguard-go answers -EADDRINUSE when the listen port is taken and its device is up (it binds
        // then). Given before its device came up, the bind comes later: WireGuardProcess.listening.
        if (/^errno=-?98$/.test(errno)) return reject(new TunnelError("PORT_IN_USE", "wireguard-go cannot bind its UDP port: address already in use"));
        if (errno !== "errno=0") return reject(new TunnelError("UAPI_FAILED", `wireguard-go refused "${request.split("\n")[0]}": ${errno || "no errno"}`));
        resolve(lines);
      });
      socket.once("error", (err) => fail(new TunnelError("UAPI_FAILED", `wireguard-go's control socket ${this.socketPath}: ${err.message}`, { cause: err })));
      socket.once("close", () => fail(new TunnelError("UAPI_FAILED", `wireguard-go closed its control socket ${this.socketPath} before answering`)));
    });
  }
}

function hex(key: string): string {
  return Buffer.from(key, "base64").toString("hex");
}
