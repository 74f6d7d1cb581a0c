import crypto from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";

/**
 * PCP's MAP request (RFC 6887 §11): the one Port Control Protocol exchange a node needs to have its
 * home router (or a carrier's NAT that speaks PCP) open a port for it. Written here because the
 * port-mapping library speaks NAT-PMP and UPnP only; the message is 60 bytes of fixed layout.
 *
 * A mapping is named by its nonce: renewing or deleting it needs the same nonce, protocol and
 * internal port (§11.1), so the caller keeps the nonce of each mapping it holds.
 */

export const PCP_PORT = 5351;
const VERSION = 2;
const OPCODE_MAP = 1;
const HEADER = 24;
const MAP_BODY = 36;

/** RFC 6887 §7.4's result codes, in words. */
const RESULTS: Record<number, string> = {
  1: "unsupported version (the router speaks NAT-PMP, not PCP)",
  2: "not authorized",
  3: "malformed request",
  4: "unsupported opcode",
  5: "unsupported option",
  6: "malformed option",
  7: "network failure",
  8: "no resources",
  9: "unsupported protocol",
  10: "user quota exceeded",
  11: "cannot provide the external port",
  12: "address mismatch (the router sees this node at another address)",
  13: "excessive remote peers",
};

export interface PcpMapRequest {
  /** This node's address toward the router: PCP carries it, and the router checks it against the datagram's source. */
  client: string;
  protocol: "udp" | "tcp";
  internalPort: number;
  /** The external port asked for (0: any); the router may assign another. */
  suggestedPort: number;
  /** Seconds; 0 deletes the mapping. */
  lifetimeS: number;
  /** 12 random bytes naming the mapping. */
  nonce: Buffer;
}

export interface PcpMapResponse {
  result: number;
  lifetimeS: number;
  epoch: number;
  nonce: Buffer;
  protocol: number;
  internalPort: number;
  externalPort: number;
  externalAddress: string;
}

export const newPcpNonce = (): Buffer => crypto.randomBytes(12);

export function encodePcpMap(r: PcpMapRequest): Buffer {
  if (r.nonce.length !== 12) throw new Error("a PCP nonce is 12 bytes");
  const b = Buffer.alloc(HEADER + MAP_BODY);
  b[0] = VERSION;
  b[1] = OPCODE_MAP; // R = 0: a request
  b.writeUInt32BE(r.lifetimeS, 4);
  mappedAddress(r.client).copy(b, 8);
  r.nonce.copy(b, HEADER);
  b[HEADER + 12] = protocolNumber(r.protocol);
  b.writeUInt16BE(r.internalPort, HEADER + 16);
  b.writeUInt16BE(r.suggestedPort, HEADER + 18);
  mappedAddress("0.0.0.0").copy(b, HEADER + 20); // no external address asked for (IPv4)
  return b;
}

/** Decodes a MAP response; undefined for anything else (too short, not version 2, not a MAP response). */
export function decodePcpMap(b: Buffer): PcpMapResponse | undefined {
  if (b.length < HEADER + MAP_BODY || b[0] !== VERSION || b[1] !== (0x80 | OPCODE_MAP)) return undefined;
  const address = b.subarray(HEADER + 20, HEADER + 36);
  return {
    result: b[3],
    lifetimeS: b.readUInt32BE(4),
    epoch: b.readUInt32BE(8),
    nonce: Buffer.from(b.subarray(HEADER, HEADER + 12)),
    protocol: b[HEADER + 12],
    internalPort: b.readUInt16BE(HEADER + 16),
    externalPort: b.readUInt16BE(HEADER + 18),
    externalAddress: isV4Mapped(address) ? [...address.subarray(12)].join(".") : formatV6(address),
  };
}

/** A NAT-PMP router's answer to a PCP request: version 0, "unsupported version" (RFC 6887 §9). */
const isNatPmpRefusal = (b: Buffer) => b.length >= 4 && b[0] === 0 && b.readUInt16BE(2) === 1;

/**
 * Sends a MAP request to `gateway` from `request.client` and resolves with the router's success
 * answer to it (same nonce, protocol and internal port); rejects with the router's reason, or "no
 * answer" after `timeoutMs`. Resent at 0, 250, 750 and 1,750 ms (§8.1.1's back-off, shortened: a
 * home router answers in milliseconds or not at all).
 */
export async function pcpMap(gateway: string, request: PcpMapRequest, timeoutMs: number): Promise<PcpMapResponse> {
  if (!net.isIPv4(gateway) || !net.isIPv4(request.client)) throw new Error("PCP is asked over IPv4 here");
  const socket = dgram.createSocket("udp4");
  const message = encodePcpMap(request);
  const timers: NodeJS.Timeout[] = [];
  try {
    return await new Promise<PcpMapResponse>((resolve, reject) => {
      socket.once("error", (err) => reject(new Error((err as NodeJS.ErrnoException).code === "ECONNREFUSED" ? "the router does not speak PCP" : err.message)));
      socket.on("message", (b, from) => {
        if (from.address !== gateway || from.port !== PCP_PORT) return;
        if (isNatPmpRefusal(b)) return reject(new Error(RESULTS[1]));
        const r = decodePcpMap(b);
        if (!r || !r.nonce.equals(request.nonce) || r.protocol !== protocolNumber(request.protocol) || r.internalPort !== request.internalPort) return;
        if (r.result !== 0) return reject(new Error(RESULTS[r.result] ?? `result code ${r.result}`));
        resolve(r);
      });
      socket.bind(0, request.client, () => {
        socket.connect(PCP_PORT, gateway, () => {
          for (const at of [0, 250, 750, 1750]) timers.push(setTimeout(() => socket.send(message, () => undefined), at));
          timers.push(setTimeout(() => reject(new Error("no answer")), timeoutMs));
        });
      });
    });
  } finally {
    for (const t of timers) clearTimeout(t);
    socket.close();
  }
}

const protocolNumber = (p: "udp" | "tcp") => (p === "udp" ? 17 : 6);

function mappedAddress(ipv4: string): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16BE(0xffff, 10);
  ipv4.split(".").forEach((octet, i) => (b[12 + i] = Number(octet)));
  return b;
}

const isV4Mapped = (a: Buffer) => a.subarray(0, 10).every((x) => x === 0) && a.readUInt16BE(10) === 0xffff;

function formatV6(a: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(a.readUInt16BE(i).toString(16));
  return groups.join(":");
}
