import net from "node:net";
import { isPublicAddress } from "../../values/ip";
import { TunnelError } from "../system";
import type { CoturnSession } from "./coturn";
import { TurnClient, type TurnCredential, type TurnServer } from "./turn-client";

/**
 * A relay learns a consumer's own address from the network, never from the consumer's words
 * (docs/relay.md "A TCP grant: the consumer's own address, proven"). A session that asks for it
 * (`proveSelf`) gets, beside its credential, a proof credential good for one thing: the consumer
 * allocates with it over TCP or TLS, the relay reads that allocation's client address from coturn's
 * `ps` listing (coturn's own socket: a TCP handshake a spoofed source cannot complete), takes it as
 * the session's one peer, and cuts the allocation off at once; any later allocation under the proof
 * credential is cut off on sight. The consumer takes the cut-off as the relay's word that it has read
 * the address, and only then hands the session's credential on.
 */

/** The proof credential's username (coturn's REST-API form, `expiry:name`). */
export function proofUsername(expiresAt: number, sessionId: string): string {
  return `${expiresAt}:proof-${sessionId}`;
}

/**
 * What a proof allocation in coturn's listing proves: its client's IPv4 address, when it came over
 * TCP or TLS and is an address a relay relays to (public, unless `allowPrivate`: tests on one host).
 * Over UDP it proves nothing: a datagram's source can be forged.
 */
export function provenAddress(allocation: CoturnSession, allowPrivate: boolean): string | undefined {
  if (allocation.transport !== "tcp" && allocation.transport !== "tls") return undefined;
  const address = allocation.client;
  if (!address || net.isIP(address) !== 4) return undefined;
  return allowPrivate || isPublicAddress(address) ? address : undefined;
}

/** How long the consumer waits for the relay to read its proof (the relay reads coturn's listing every 150 ms while one is due). */
export const PROOF_TIMEOUT_MS = 8000;

/**
 * The consumer's proof: an Allocate under the proof credential over TCP or TLS (`server`), held until
 * the relay cuts it off (it has read this host's address then). Resolves with this host's address as
 * the relay saw it (the Allocate answer's XOR-MAPPED-ADDRESS): what the grant names as its one peer,
 * for the provider's permission. RELAY_FAILED when the relay does not cut it off in time.
 */
export async function proveAddress(server: TurnServer, credential: TurnCredential, timeoutMs = PROOF_TIMEOUT_MS): Promise<string> {
  if (server.transport === "udp") throw new TunnelError("RELAY_FAILED", "a proof of this host's address goes over TCP or TLS, not UDP");
  const turn = await TurnClient.allocate(server, credential, { timeoutMs: Math.min(timeoutMs, 3000) }).catch((err: Error) => {
    throw new TunnelError("RELAY_FAILED", `the relay refused the proof of this host's address: ${err.message}`, { cause: err });
  });
  const mapped = turn.mapped?.address;
  const cut = turn.closed
    ? Promise.resolve(true)
    : new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        turn.once("closed", () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
  const taken = await cut;
  await turn.close();
  if (!taken) throw new TunnelError("RELAY_FAILED", `the relay did not take this host's address (its proof allocation was not ended in ${timeoutMs} ms)`);
  if (!mapped) throw new TunnelError("RELAY_FAILED", "the relay's answer to the proof did not say this host's address");
  return mapped;
}
