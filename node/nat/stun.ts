import crypto from "node:crypto";
import type dgram from "node:dgram";
import net from "node:net";
import { MystError } from "../errors/MystError";

/**
 * STUN (RFC 8489): the message codec and a Binding client that asks from the caller's own UDP
 * socket, so the mapping it learns is the one that socket's later traffic (a punch, a tunnel) gets.
 * Only what a node needs: Binding requests, their answers, RFC 5780's CHANGE-REQUEST and
 * OTHER-ADDRESS for classifying a NAT; MESSAGE-INTEGRITY and FINGERPRINT are parsed and checked
 * (RFC 5769's vectors in test/node/nat/stun.test.ts).
 */

export type StunErrorCode = "STUN_MALFORMED" | "STUN_TIMEOUT" | "STUN_ERROR_RESPONSE" | "STUN_ABORTED" | "STUN_SEND_FAILED";
export class StunError extends MystError<StunErrorCode> {}

export const MAGIC_COOKIE = 0x2112a442;
const COOKIE_BYTES = Buffer.from([0x21, 0x12, 0xa4, 0x42]);
const HEADER = 20;
/** The largest answer read: RFC 8489 keeps messages under the path MTU; 1280 bytes is IPv6's minimum. Anything longer is dropped. */
export const MAX_MESSAGE_BYTES = 1280;
const FINGERPRINT_XOR = 0x5354554e;

export const BINDING = 0x001;

export type StunClass = "request" | "indication" | "success" | "error";
const CLASS_BITS: Record<StunClass, number> = { request: 0x000, indication: 0x010, success: 0x100, error: 0x110 };

export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const;

export interface StunAttribute {
  type: number;
  value: Buffer;
}

export interface StunMessage {
  method: number;
  cls: StunClass;
  transactionId: Buffer;
  attributes: StunAttribute[];
  /** The bytes as received (integrity and fingerprint are checked over them). */
  raw: Buffer;
}

export interface TransportAddress {
  family: 4 | 6;
  address: string;
  port: number;
}

function messageType(method: number, cls: StunClass): number {
  // The method's 12 bits around the class's two (RFC 8489 §5: M11..M7 C1 M6..M4 C0 M3..M0).
  return ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | CLASS_BITS[cls];
}

function splitType(type: number): { method: number; cls: StunClass } {
  const method = ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f);
  const bits = type & 0x0110;
  const cls = (Object.keys(CLASS_BITS) as StunClass[]).find((c) => CLASS_BITS[c] === bits)!;
  return { method, cls };
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Whether a datagram looks like STUN at all (first two bits zero, the magic cookie): cheap, before decoding. */
export function looksLikeStun(buf: Buffer): boolean {
  return buf.length >= HEADER && (buf[0] & 0xc0) === 0 && buf.readUInt32BE(4) === MAGIC_COOKIE;
}

/**
 * Decodes one STUN message. Throws `STUN_MALFORMED` (with why) for anything that is not exactly one
 * well-formed message: too short or too long, not STUN, a length that is not the datagram's, an
 * attribute past the end, anything but FINGERPRINT after MESSAGE-INTEGRITY, anything after FINGERPRINT.
 */
export function decodeStunMessage(buf: Buffer): StunMessage {
  const malformed = (why: string) => new StunError("STUN_MALFORMED", `not a STUN message: ${why}`);
  if (buf.length > MAX_MESSAGE_BYTES) throw malformed(`${buf.length} bytes, more than ${MAX_MESSAGE_BYTES}`);
  if (buf.length < HEADER) throw malformed(`${buf.length} bytes, shorter than a header`);
  if (!looksLikeStun(buf)) throw malformed("no magic cookie");
  const length = buf.readUInt16BE(2);
  if (length % 4 !== 0) throw malformed(`a length of ${length}, not a multiple of 4`);
  if (HEADER + length !== buf.length) throw malformed(`a length of ${length} in ${buf.length} bytes`);
  const { method, cls } = splitType(buf.readUInt16BE(0));
  const attributes: StunAttribute[] = [];
  let at = HEADER;
  let integrity = false;
  while (at < buf.length) {
    if (at + 4 > buf.length) throw malformed("a truncated attribute header");
    const type = buf.readUInt16BE(at);
    const size = buf.readUInt16BE(at + 2);
    const end = at + 4 + size;
    if (end + pad4(size) > buf.length) throw malformed(`attribute 0x${type.toString(16)} runs past the message`);
    if (attributes.some((a) => a.type === ATTR.FINGERPRINT)) throw malformed("an attribute after FINGERPRINT");
    if (integrity && type !== ATTR.FINGERPRINT && type !== ATTR.MESSAGE_INTEGRITY_SHA256) throw malformed("an attribute after MESSAGE-INTEGRITY");
    if (type === ATTR.MESSAGE_INTEGRITY) integrity = true;
    attributes.push({ type, value: buf.subarray(at + 4, end) });
    at = end + pad4(size);
  }
  return { method, cls, transactionId: buf.subarray(8, HEADER), attributes, raw: buf };
}

export interface EncodeOptions {
  /** Adds MESSAGE-INTEGRITY (HMAC-SHA1) under this key. */
  integrityKey?: Buffer;
  /** Adds FINGERPRINT (last). */
  fingerprint?: boolean;
}

/** Encodes a message; attributes are padded with zeros (RFC 8489 lets padding be anything). */
export function encodeStunMessage(
  message: { method: number; cls: StunClass; transactionId: Buffer; attributes?: StunAttribute[] },
  options: EncodeOptions = {},
): Buffer {
  if (message.transactionId.length !== 12) throw new StunError("STUN_MALFORMED", "a transaction id is 12 bytes");
  const parts: Buffer[] = [];
  for (const a of message.attributes ?? []) {
    if (a.value.length > 0xffff) throw new StunError("STUN_MALFORMED", `attribute 0x${a.type.toString(16)} is too long`);
    const head = Buffer.alloc(4);
    head.writeUInt16BE(a.type, 0);
    head.writeUInt16BE(a.value.length, 2);
    parts.push(head, a.value, Buffer.alloc(pad4(a.value.length)));
  }
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(messageType(message.method, message.cls), 0);
  COOKIE_BYTES.copy(header, 4);
  message.transactionId.copy(header, 8);
  const body = Buffer.concat(parts);
  header.writeUInt16BE(body.length, 2);
  let bytes: Buffer = Buffer.concat([header, body]);
  if (options.integrityKey) bytes = appendIntegrity(bytes, options.integrityKey);
  if (options.fingerprint) bytes = appendFingerprint(bytes);
  return bytes;
}

/** Appends MESSAGE-INTEGRITY: HMAC-SHA1 over the message with its length already counting the attribute (24 bytes). */
export function appendIntegrity(message: Buffer, key: Buffer): Buffer {
  const covered = Buffer.from(message);
  covered.writeUInt16BE(message.length - HEADER + 24, 2);
  const mac = crypto.createHmac("sha1", key).update(covered).digest();
  return Buffer.concat([covered, attributeBytes(ATTR.MESSAGE_INTEGRITY, mac)]);
}

/** Appends FINGERPRINT: CRC-32 of the message (its length counting the attribute) XOR 0x5354554e. */
export function appendFingerprint(message: Buffer): Buffer {
  const covered = Buffer.from(message);
  covered.writeUInt16BE(message.length - HEADER + 8, 2);
  const value = Buffer.alloc(4);
  value.writeUInt32BE((crc32(covered) ^ FINGERPRINT_XOR) >>> 0, 0);
  return Buffer.concat([covered, attributeBytes(ATTR.FINGERPRINT, value)]);
}

function attributeBytes(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(value.length, 2);
  return Buffer.concat([head, value, Buffer.alloc(pad4(value.length))]);
}

/** Offset of the attribute's header in `raw` (attributes are views into it). */
function offsetOf(message: StunMessage, attribute: StunAttribute): number {
  return attribute.value.byteOffset - message.raw.byteOffset - 4;
}

/** The first attribute of a type (RFC 8489: later duplicates are ignored). */
export function attributeOf(message: StunMessage, type: number): Buffer | undefined {
  return message.attributes.find((a) => a.type === type)?.value;
}

/** FINGERPRINT's check: true or false, or undefined when the message has none. */
export function checkFingerprint(message: StunMessage): boolean | undefined {
  const attribute = message.attributes.find((a) => a.type === ATTR.FINGERPRINT);
  if (!attribute) return undefined;
  if (attribute.value.length !== 4) return false;
  const offset = offsetOf(message, attribute);
  const covered = Buffer.from(message.raw.subarray(0, offset));
  covered.writeUInt16BE(offset + 8 - HEADER, 2);
  return (crc32(covered) ^ FINGERPRINT_XOR) >>> 0 === attribute.value.readUInt32BE(0);
}

/** MESSAGE-INTEGRITY's check under `key`: true or false, or undefined when the message has none. */
export function checkIntegrity(message: StunMessage, key: Buffer): boolean | undefined {
  const attribute = message.attributes.find((a) => a.type === ATTR.MESSAGE_INTEGRITY);
  if (!attribute) return undefined;
  if (attribute.value.length !== 20) return false;
  const offset = offsetOf(message, attribute);
  const covered = Buffer.from(message.raw.subarray(0, offset));
  covered.writeUInt16BE(offset + 24 - HEADER, 2);
  const mac = crypto.createHmac("sha1", key).update(covered).digest();
  return crypto.timingSafeEqual(mac, attribute.value);
}

/** The short-term credential's key: the password, as OpaqueString (RFC 8265) leaves it — NFC here. */
export function shortTermKey(password: string): Buffer {
  return Buffer.from(password.normalize("NFC"), "utf8");
}

/** The long-term credential's key (RFC 8489 §9.2.2): MD5(username ":" realm ":" password). */
export function longTermKey(username: string, realm: string, password: string): Buffer {
  return crypto
    .createHash("md5")
    .update(`${username.normalize("NFC")}:${realm}:${password.normalize("NFC")}`, "utf8")
    .digest();
}

/** XOR-MAPPED-ADDRESS (and XOR-PEER/RELAYED) value: the address XORed with the cookie (and the transaction id for IPv6). */
export function decodeXorAddress(value: Buffer, transactionId: Buffer): TransportAddress {
  const plain = decodeAddress(value);
  const port = plain.port ^ (MAGIC_COOKIE >>> 16);
  const mask = Buffer.concat([COOKIE_BYTES, transactionId]);
  const raw = value.subarray(4);
  const bytes = Buffer.from(raw.map((b, i) => b ^ mask[i]));
  return { family: plain.family, address: addressText(bytes), port };
}

export function encodeXorAddress(address: TransportAddress, transactionId: Buffer): Buffer {
  const plain = encodeAddress(address);
  plain.writeUInt16BE(address.port ^ (MAGIC_COOKIE >>> 16), 2);
  const mask = Buffer.concat([COOKIE_BYTES, transactionId]);
  for (let i = 4; i < plain.length; i++) plain[i] ^= mask[i - 4];
  return plain;
}

/** MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN: family, port, address in the clear. */
export function decodeAddress(value: Buffer): TransportAddress {
  if (value.length < 4) throw new StunError("STUN_MALFORMED", "an address attribute shorter than 4 bytes");
  const family = value[1];
  const expected = family === 0x01 ? 8 : family === 0x02 ? 20 : 0;
  if (expected === 0) throw new StunError("STUN_MALFORMED", `address family 0x${family.toString(16)}`);
  if (value.length !== expected) throw new StunError("STUN_MALFORMED", `an IPv${family === 1 ? 4 : 6} address attribute of ${value.length} bytes`);
  return { family: family === 0x01 ? 4 : 6, address: addressText(value.subarray(4)), port: value.readUInt16BE(2) };
}

export function encodeAddress(address: TransportAddress): Buffer {
  const bytes = addressBytes(address.address);
  const value = Buffer.alloc(4 + bytes.length);
  value[1] = bytes.length === 4 ? 0x01 : 0x02;
  value.writeUInt16BE(address.port, 2);
  bytes.copy(value, 4);
  return value;
}

function addressText(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new net.SocketAddress({ address: groups.join(":"), family: "ipv6" }).address;
}

function addressBytes(text: string): Buffer {
  if (net.isIPv4(text)) return Buffer.from(text.split(".").map(Number));
  if (!net.isIPv6(text)) throw new StunError("STUN_MALFORMED", `${text} is not an IP address`);
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const parse = (s: string | undefined) => (s ? s.split(":").map((g) => Number.parseInt(g, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** ERROR-CODE: the number (class × 100 + number) and the reason phrase. */
export function decodeErrorCode(value: Buffer): { code: number; reason: string } {
  if (value.length < 4) throw new StunError("STUN_MALFORMED", "an ERROR-CODE shorter than 4 bytes");
  return { code: (value[2] & 0x07) * 100 + value[3], reason: value.subarray(4).toString("utf8") };
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO-HDLC, the one FINGERPRINT uses). */
export function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Why an incoming datagram did not answer the request (a test and the log see these). */
export type StunDropReason = "not-stun" | "too-large" | "malformed" | "foreign-transaction" | "not-binding-answer" | "bad-fingerprint" | "wrong-source";

export interface BindingOptions {
  /** RFC 8489's RTO: the first retransmission after this, each next after twice the last. Default 500 ms. */
  rtoMs?: number;
  /** RFC 8489's Rc: requests sent in all. Default 7. */
  requests?: number;
  /** RFC 8489's Rm: after the last request, wait this many RTOs. Default 16. */
  lastWaitFactor?: number;
  /** RFC 5780 CHANGE-REQUEST: ask the server to answer from its other address and/or port. */
  change?: { ip: boolean; port: boolean };
  signal?: AbortSignal;
  /** Told of every datagram the socket got during the transaction that was not its answer. */
  onDrop?: (reason: StunDropReason, from: { address: string; port: number }) => void;
}

export interface BindingResult {
  /** What the server saw: the socket's public mapping. */
  mapped: TransportAddress;
  /** Where the answer came from. */
  from: { address: string; port: number };
  /** RFC 5780 OTHER-ADDRESS: the server's second address and port, when it has one. */
  otherAddress?: TransportAddress;
  /** Requests sent before the answer came (1 when the first was answered). */
  requestsSent: number;
}

/**
 * Sends a Binding request from `socket` (bound, UDP) to `server` and resolves with the mapped
 * address, retransmitting per RFC 8489 §6.2.1. Only an answer with this transaction's id, a Binding
 * success or error, well formed, with a FINGERPRINT that checks when it has one, and (without
 * `change`) from the server's own address counts; everything else the socket gets meanwhile is
 * left alone (told to `onDrop`). An error answer rejects with `STUN_ERROR_RESPONSE`, silence with
 * `STUN_TIMEOUT`.
 */
export function stunBinding(socket: dgram.Socket, server: { address: string; port: number }, options: BindingOptions = {}): Promise<BindingResult> {
  const rto = options.rtoMs ?? 500;
  const requests = options.requests ?? 7;
  const lastWait = (options.lastWaitFactor ?? 16) * rto;
  const transactionId = crypto.randomBytes(12);
  const attributes: StunAttribute[] = [];
  if (options.change) {
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE((options.change.ip ? 0x4 : 0) | (options.change.port ? 0x2 : 0), 0);
    attributes.push({ type: ATTR.CHANGE_REQUEST, value: flags });
  }
  const request = encodeStunMessage({ method: BINDING, cls: "request", transactionId, attributes }, { fingerprint: true });

  return new Promise<BindingResult>((resolve, reject) => {
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: { result: BindingResult } | { error: Error }) => {
      clearTimeout(timer);
      socket.off("message", onMessage);
      options.signal?.removeEventListener("abort", onAbort);
      if ("result" in outcome) resolve(outcome.result);
      else reject(outcome.error);
    };
    const onAbort = () => finish({ error: new StunError("STUN_ABORTED", `the STUN request to ${server.address}:${server.port} was cancelled`) });
    const drop = (reason: StunDropReason, from: dgram.RemoteInfo) => options.onDrop?.(reason, { address: from.address, port: from.port });
    const onMessage = (buf: Buffer, from: dgram.RemoteInfo) => {
      if (buf.length > MAX_MESSAGE_BYTES) return drop("too-large", from);
      if (!looksLikeStun(buf)) return drop("not-stun", from);
      if (!buf.subarray(8, HEADER).equals(transactionId)) return drop("foreign-transaction", from);
      if (!options.change && (from.address !== server.address || from.port !== server.port)) return drop("wrong-source", from);
      let message: StunMessage;
      try {
        message = decodeStunMessage(buf);
      } catch {
        return drop("malformed", from);
      }
      if (message.method !== BINDING || (message.cls !== "success" && message.cls !== "error")) return drop("not-binding-answer", from);
      if (checkFingerprint(message) === false) return drop("bad-fingerprint", from);
      if (message.cls === "error") {
        const value = attributeOf(message, ATTR.ERROR_CODE);
        const error = value ? safe(() => decodeErrorCode(value)) : undefined;
        return finish({
          error: new StunError(
            "STUN_ERROR_RESPONSE",
            `the STUN server ${server.address}:${server.port} answered ${error ? `${error.code} ${error.reason}` : "an error"}`,
          ),
        });
      }
      const xor = attributeOf(message, ATTR.XOR_MAPPED_ADDRESS);
      const plain = attributeOf(message, ATTR.MAPPED_ADDRESS);
      const mapped = xor ? safe(() => decodeXorAddress(xor, transactionId)) : plain ? safe(() => decodeAddress(plain)) : undefined;
      if (!mapped) return drop("malformed", from);
      const other = attributeOf(message, ATTR.OTHER_ADDRESS);
      finish({
        result: {
          mapped,
          from: { address: from.address, port: from.port },
          otherAddress: other ? safe(() => decodeAddress(other)) : undefined,
          requestsSent: sent,
        },
      });
    };
    const send = () => {
      sent++;
      socket.send(request, server.port, server.address, (err) => {
        if (err)
          finish({
            error: new StunError("STUN_SEND_FAILED", `could not send to the STUN server ${server.address}:${server.port}: ${err.message}`, { cause: err }),
          });
      });
      const wait = sent < requests ? rto * 2 ** (sent - 1) : lastWait;
      timer = setTimeout(() => {
        if (sent < requests) send();
        else finish({ error: new StunError("STUN_TIMEOUT", `the STUN server ${server.address}:${server.port} did not answer (${sent} requests)`) });
      }, wait);
    };
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    socket.on("message", onMessage);
    send();
  });
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** Parses "host:port" or "[v6]:port" (a STUN server in the settings); default port 3478. */
export function parseServer(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] === undefined ? 3478 : Number(m[3]);
  if (!m || port < 1 || port > 65535) throw new StunError("STUN_MALFORMED", `"${text}" is not a STUN server (host:port)`);
  return { host: m[1] ?? m[2], port };
}
