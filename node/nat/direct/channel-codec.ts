import crypto from "node:crypto";
import { isIP } from "node:net";
import { MAX_PAYLOAD } from "./packet";

export type FrameKind = "request" | "response" | "notify";
export const FRAME_KIND: Record<FrameKind, number> = { request: 1, response: 2, notify: 3 };
export const FRAME_KIND_OF = new Map(Object.entries(FRAME_KIND).map(([k, v]) => [v, k as FrameKind]));
export const MAX_FRAME_BYTES = MAX_PAYLOAD - 5;

export function encodeAddress(address: string, port: number): Buffer {
  const b = Buffer.alloc(6);
  if (isIP(address) === 4) address.split(".").forEach((o, i) => (b[i] = Number(o)));
  b.writeUInt16BE(port, 4);
  return b;
}

export function decodeAddress(b: Buffer): { address: string; port: number } | undefined {
  if (b.length < 6 || b.readUInt32BE(0) === 0) return undefined;
  return { address: [...b.subarray(0, 4)].join("."), port: b.readUInt16BE(4) };
}

/** `n` distinct random ports in 1024-65535. */
export function randomPorts(n: number): number[] {
  const picked = new Set<number>();
  const count = Math.min(n, 64_000);
  while (picked.size < count) picked.add(1024 + crypto.randomInt(65536 - 1024));
  return [...picked];
}
