import crypto from "node:crypto";
import type { DirectionKey } from "./packet";

/** The secret each side contributes, sent only inside the session's signed and encrypted dialog messages. */
export const SECRET_PATTERN = "^[0-9a-f]{64}$";

export function newSecret(): string {
  return crypto.randomBytes(32).toString("hex");
}

export interface ChannelKeys {
  /** What the consumer sends with (and the provider opens with). */
  consumerToProvider: DirectionKey;
  providerToConsumer: DirectionKey;
  /** What the provider sends from its tunnel's own port (hard-NAT probing for the tunnel), with its own replay window. */
  providerTunnelToConsumer: DirectionKey;
  /** The mirror: what the consumer sends from its tunnel's own port (the provider's router is the hard one). */
  consumerTunnelToProvider: DirectionKey;
}

/**
 * The channel's keys: HKDF-SHA256 over both sides' secrets (each came inside the other's sealed,
 * signed dialog message, so only the two identities know them), salted with the session id. A
 * session's keys are its own; a captured datagram means nothing to another session.
 */
export function channelKeys(sessionId: string, consumerSecret: string, providerSecret: string): ChannelKeys {
  const ikm = Buffer.concat([Buffer.from(consumerSecret, "hex"), Buffer.from(providerSecret, "hex")]);
  const okm = Buffer.from(crypto.hkdfSync("sha256", ikm, Buffer.from(sessionId, "utf8"), Buffer.from("myst/direct/v1"), 160));
  const direction = (key: Buffer, tag: Buffer): DirectionKey => ({ key, tag });
  return {
    consumerToProvider: direction(okm.subarray(0, 32), okm.subarray(64, 72)),
    providerToConsumer: direction(okm.subarray(32, 64), okm.subarray(72, 80)),
    providerTunnelToConsumer: direction(okm.subarray(80, 112), okm.subarray(112, 120)),
    consumerTunnelToProvider: direction(okm.subarray(120, 152), okm.subarray(152, 160)),
  };
}
