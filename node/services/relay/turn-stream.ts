import net from "node:net";
import tls from "node:tls";
import { MystError } from "../../errors/MystError";
import { pinnedTls } from "../certificate";
import type { TurnServer } from "./turn-client";

export type TurnErrorCode = "TURN_ERROR_RESPONSE" | "TURN_TIMEOUT" | "TURN_CLOSED";
export class TurnError extends MystError<TurnErrorCode> {
  /** The server's error code (401, 403, 437, 438, 441, 486…) for TURN_ERROR_RESPONSE. */
  status?: number;
}

/**
 * A TCP or TLS connection to a TURN server (TLS: up once the handshake is done and the server's
 * certificate is the pinned one). An allocation's control connection and, over TCP relaying
 * (RFC 6062, turn-tcp.ts), each of its data connections.
 */
export async function openTurnStream(server: TurnServer, timeoutMs: number): Promise<net.Socket> {
  const { address, port, transport, pin } = server;
  const what = transport.toUpperCase();
  if (transport === "tls" && !pin) throw new TurnError("TURN_CLOSED", `no certificate to pin for the relay ${address}:${port} (TLS)`);
  const socket =
    transport === "tls" && pin
      ? tls.connect({ host: address, port, minVersion: "TLSv1.2", ...pinnedTls(pin.certificate, pin.fingerprint, "the relay's") }).setNoDelay(true)
      : net.connect({ host: address, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TurnError("TURN_TIMEOUT", `no ${what} connection to the relay ${address}:${port} in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      // A certificate no CA list holds but the pinned one: the server is not the relay its answer named.
      const pinned = transport === "tls" && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(err.code ?? "") ? "its certificate is not the one pinned: " : "";
      reject(new TurnError("TURN_CLOSED", `no ${what} connection to the relay ${address}:${port}: ${pinned}${err.message}`));
    });
    socket.once(transport === "tls" ? "secureConnect" : "connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return socket;
}
