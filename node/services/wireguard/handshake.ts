import dgram from "node:dgram";
import { TunnelError } from "../system";
import type { WireGuardProcess } from "./process";

/**
 * A UDP port free here (bound and released at once), for a tunnel that must name its port before
 * it exists. In another namespace, where this process cannot bind, a random high port.
 */
export async function freeUdpPort(netns: string | undefined): Promise<number> {
  if (netns) return 20_000 + Math.floor(Math.random() * 40_000);
  const socket = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, () => resolve());
    });
    return socket.address().port;
  } finally {
    socket.close();
  }
}

/**
 * Resolves once wireguard-go has a handshake with its (first) peer; `HANDSHAKE_TIMEOUT` after `timeoutMs`, or the reason
 * of `giveUp` as soon as it is aborted (the path cannot work: no wait for the timeout) while the peer has no endpoint yet
 * (a peer set up without one learns it from the provider's first initiation: from then on only the timeout ends the wait). Polled every millisecond at first
 * (a handshake on a near link takes about one), then every `everyMs` (5 by default: the connect waits on it; a caller that
 * waits while a birthday search runs asks less often, which leaves the CPU to the search).
 */
export function waitHandshake(process: WireGuardProcess, timeoutMs: number, everyMs = 5, giveUp?: AbortSignal): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  return (async () => {
    for (;;) {
      if (!process.running) throw process.explain("wireguard-go exited before the tunnel came up");
      const state = await process.uapi.get();
      const peer = state.peers[0];
      if (peer?.lastHandshakeMs) return;
      // Given up only while nothing of the provider's reached us: a peer that learned an endpoint took
      // its authenticated initiation (the tunnels met), and a lost answer is retried by WireGuard (5 s).
      if (giveUp?.aborted && !peer?.endpoint) throw giveUp.reason;
      if (Date.now() > deadline)
        throw new TunnelError(
          "HANDSHAKE_TIMEOUT",
          `the provider did not answer the WireGuard handshake within ${timeoutMs} ms (it does not know this key, or is unreachable)`,
        );
      await new Promise((r) => setTimeout(r, Date.now() - started < 50 ? 1 : everyMs));
    }
  })();
}
