import type { Proposal, SignedProposal } from "../proposal/proposal";

/** Length of `0x` + 64 bytes of signature in hex: a signature as the schema allows it. */
export const SIGNATURE_LENGTH = 130;

/**
 * One (provider, service type) as a query or `get` returns it: a copy of what the index's columns
 * (`EntryTable`) hold for it at that moment. The signature and signed text are read from the
 * index when first asked for (a ranked or filtered walk need not decode them all): in the same turn
 * of the event loop, or before the index takes another write for this key — after that, reading
 * them throws rather than serve another text.
 */
export class IndexEntry {
  /** In the query arrays. */
  listed = false;
  withdrawn = false;
  /** Newest createdAt seen, or the withdrawal's time. */
  createdAt = 0;
  expiresAt = 0;
  /** When queries stop returning it: the proposal's own expiry, or the store's TTL if sooner. */
  liveUntil = 0;
  /** When the store forgets this key (stored time + TTL), and so does this index. */
  keepUntil = 0;
  serviceType = "";
  country = "";
  ipType = "";
  perHour = 0n;
  perGiB = 0n;
  /** Price bands (see `band` in index.ts) of perHour and perGiB. */
  hourBand = 0;
  gibBand = 0;
  bandwidthMbps = 0;
  ipv6 = false;
  accessPolicy: "open" | "allowlist" = "open";
  #signature = "";
  #text = "";
  #source?: { table: EntryTable; slot: number; stamp: number };

  constructor(
    readonly key: string,
    /** The store's revision of this key (0: the store has none). */
    public revision: number,
    source?: { table: EntryTable; slot: number; stamp: number },
  ) {
    this.#source = source;
  }

  /** The signature as its provider wrote it ("" when not listed). */
  get signature(): string {
    this.#read();
    return this.#signature;
  }

  /** The signed proposal text, byte for byte ("" when not listed). */
  get text(): string {
    this.#read();
    return this.#text;
  }

  #read(): void {
    const source = this.#source;
    if (!source) return;
    if (source.table.stampOf(source.slot) !== source.stamp) throw new Error(`the index changed ${this.key} since this entry was read from it`);
    this.#signature = source.table.signatureOf(source.slot);
    this.#text = source.table.textOf(source.slot);
    this.#source = undefined;
  }

  get provider(): string {
    return this.key.slice(0, 42);
  }

  /** The signature followed by the signed proposal text. */
  get body(): string {
    return this.signature + this.text;
  }

  get signed(): SignedProposal {
    return { proposal: this.text, signature: this.signature };
  }

  get proposal(): Proposal {
    return JSON.parse(this.text) as Proposal;
  }

  /** `{"signed": …, "proposal": …}` as the API serves it, built from the stored text (no re-serialization). */
  json(): string {
    return `{"signed":{"proposal":${JSON.stringify(this.text)},"signature":${JSON.stringify(this.signature)}},"proposal":${this.text}}`;
  }
}

/** Bits of `EntryTable.flags`. */
export const LISTED = 1;
export const WITHDRAWN = 2;
export const IPV6 = 4;
export const ALLOWLIST = 8;
/** The signature is `0x` and 128 lowercase hex digits, kept as its 64 bytes. */
const SIG_BINARY = 16;
/** The price does not fit 64 bits: it is in the overflow map. */
const HOUR_BIG = 32;
const GIB_BIG = 64;
/** The text is kept packed (`packText`). */
const TEXT_PACKED = 128;

const U64 = 1n << 64n;

/**
 * The pieces of a proposal's text that the node writes in every proposal (node/daemon/provider-node.ts:
 * field names in their order, the fixed values), each kept as one control character. JSON never holds
 * these characters raw (a string escapes them), so a signed text packs and unpacks to itself byte for
 * byte; a text that holds one anyway is kept as it is. ~290 of a typical proposal's ~470 bytes.
 */
const PIECES = [
  '{"format":"myst-proposal/1","provider":"0x',
  '","serviceType":"',
  '","location":{"country":"',
  '","city":"',
  '","asn":',
  ',"isp":"',
  '","ipType":"',
  ',"ipType":"',
  '"},"price":{"currency":"MYST","perHour":"',
  '","perGiB":"',
  '"},"bandwidthMbps":',
  ',"contacts":[{"type":"nats/v1","brokerUrls":["',
  '"],"subject":"myst.dialog.0x',
  '"}],"createdAt":',
  '"},{"type":"direct/v1","nat":{"mapping":"',
  '","filtering":"',
  '"},"candidates":[{"kind":"',
  '","address":"',
  '","port":',
  ',"protocol":"',
  '"}]}],"createdAt":',
  ',"expiresAt":',
  ',"ipv6":true',
  ',"accessPolicy":"allowlist"',
  "residential",
  "endpoint-independent",
  "000000000000",
  "nats://",
];
/** The control characters JSON text never holds raw (tab, newline and carriage return it may). */
const CODES = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, ...Array.from({ length: 18 }, (_, i) => 14 + i)].map((c) => String.fromCharCode(c));
const CODE_OF = new Map(PIECES.map((p, i) => [p, CODES[i]]));
const PIECE_OF = new Map(PIECES.map((p, i) => [CODES[i], p]));
const ANY_PIECE = new RegExp(
  [...PIECES]
    .sort((a, b) => b.length - a.length)
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("|"),
  "g",
);
const ANY_CODE = new RegExp(`[${CODES.join("")}]`, "g");

/** The text with each piece as its code (null: the text holds a code character itself, and is kept as it is). */
export function packText(text: string): string | null {
  ANY_CODE.lastIndex = 0;
  if (ANY_CODE.test(text)) return null;
  return text.replace(ANY_PIECE, (p) => CODE_OF.get(p) as string);
}

export function unpackText(packed: string): string {
  return packed.replace(ANY_CODE, (c) => PIECE_OF.get(c) as string);
}

/** Each code's piece by its character code ("" for a character that is not a code). */
const PIECE_BY_CODE: string[] = Array.from({ length: 32 }, () => "");
for (let i = 0; i < PIECES.length; i++) PIECE_BY_CODE[CODES[i].charCodeAt(0)] = PIECES[i];

/**
 * `unpackText`, by one scan of the character codes and concatenation (a code is a character below
 * 0x20): about half the cost of the regular expression with a callback per piece, which made a page
 * of 100 texts cost ~3× what stored strings did (docs/scale.md).
 */
export function unpackFast(packed: string): string {
  let out = "";
  let last = 0;
  for (let i = 0; i < packed.length; i++) {
    const c = packed.charCodeAt(i);
    if (c < 32 && PIECE_BY_CODE[c] !== "") {
      out += packed.slice(last, i) + PIECE_BY_CODE[c];
      last = i + 1;
    }
  }
  return last === 0 ? packed : out + packed.slice(last);
}
/** A slot's body in the texts' buffer (`EntryTable.bodyOf`): the signature, then the text up to `textEnd`. */
export interface BodyView {
  arena: Buffer;
  signatureAt: number;
  signatureEnd: number;
  /** The signature is kept as its 64 bytes (written as `0x` and lowercase hex). */
  binarySignature: boolean;
  textEnd: number;
  /** The text is packed (`packText`): a code byte stands for its piece. */
  packed: boolean;
}

/** Each code's piece by its character code, for page-json.ts ("" for a character that is not a code). */
export function pieceOf(code: number): string {
  return code < 32 ? PIECE_BY_CODE[code] : "";
}

const LOWER_HEX_SIGNATURE = /^0x[0-9a-f]{128}$/;
/**
 * How much the columns and the texts' buffer grow when full: by a quarter, not twice (twice left up to
 * half of each reserved and unused: ~90 B a proposal at 100k); the copies cost a few ms more at 100k.
 */
const GROWTH = 1.25;
/**
 * Every key the index knows, in columns: a slot number per key, typed arrays for its times, prices,
 * bands, labels and flags, and one buffer (outside V8's heap) for the signatures and signed texts.
 * An object per entry cost ~180 B of fields plus a boxed number for each time and a bigint for each
 * price; a slot costs ~90 B of columns, the key string and its map entry. Slots of forgotten keys are
 * reused; the texts' buffer is compacted when more than half of it is text no longer held.
 */
export class EntryTable {
  readonly #slots = new Map<string, number>();
  /** Slot → key (undefined: a free slot). Sorted sets read keys from it. */
  readonly keys: (string | undefined)[] = [];
  readonly #free: number[] = [];
  #capacity = 0;
  revision = new Float64Array(0);
  createdAt = new Float64Array(0);
  expiresAt = new Float64Array(0);
  liveUntil = new Float64Array(0);
  keepUntil = new Float64Array(0);
  bandwidthMbps = new Float64Array(0);
  #perHour = new BigUint64Array(0);
  #perGiB = new BigUint64Array(0);
  /** Prices of 2^64 wei or more (none in practice), by slot. */
  readonly #bigPrices = new Map<number, [bigint, bigint]>();
  hourBand = new Uint16Array(0);
  gibBand = new Uint16Array(0);
  /** Label ids (see `label`) of the country and the IP type. */
  country = new Uint32Array(0);
  ipType = new Uint32Array(0);
  flags = new Uint8Array(0);
  #bodyAt = new Float64Array(0);
  #bodyBytes = new Uint32Array(0);
  #signatureBytes = new Uint32Array(0);
  /** Counts each slot's text writes (and its reuse): an IndexEntry reads its text only while it is unchanged. */
  #stamps = new Uint32Array(0);
  /** Counts each slot's keys: a ranked order skips a slot reused for another key since it was made. */
  generations = new Uint32Array(0);
  #arena = Buffer.allocUnsafeSlow(0);
  #arenaUsed = 0;
  #arenaGarbage = 0;
  readonly #labels: string[] = [];
  readonly #labelIds = new Map<string, number>();

  get size(): number {
    return this.#slots.size;
  }

  slotOf(key: string): number | undefined {
    return this.#slots.get(key);
  }

  /** Every slot in use. */
  slots(): IterableIterator<number> {
    return this.#slots.values();
  }

  /** A new slot for `key`, every column zero (not listed, no text). */
  add(key: string, revision: number): number {
    let s = this.#free.pop();
    if (s === undefined) {
      s = this.keys.length;
      if (s === this.#capacity) this.#grow(Math.max(1024, Math.ceil(this.#capacity * GROWTH)));
      this.keys.push(key);
    } else this.keys[s] = key;
    this.#slots.set(key, s);
    this.generations[s]++;
    this.revision[s] = revision;
    this.createdAt[s] = this.expiresAt[s] = this.liveUntil[s] = this.keepUntil[s] = this.bandwidthMbps[s] = 0;
    this.#perHour[s] = this.#perGiB[s] = 0n;
    this.hourBand[s] = this.gibBand[s] = this.country[s] = this.ipType[s] = this.flags[s] = 0;
    this.#bodyAt[s] = this.#bodyBytes[s] = this.#signatureBytes[s] = 0;
    return s;
  }

  /** Forgets a slot's key (its text must be cleared already); the slot is reused. */
  forget(s: number): void {
    const key = this.keys[s];
    if (key === undefined) return;
    this.clearBody(s);
    this.#bigPrices.delete(s);
    this.#slots.delete(key);
    this.keys[s] = undefined;
    this.#free.push(s);
  }

  has(s: number, flag: number): boolean {
    return (this.flags[s] & flag) !== 0;
  }

  set(s: number, flag: number, on: boolean): void {
    this.flags[s] = on ? this.flags[s] | flag : this.flags[s] & ~flag;
  }

  /** The id of a short label (country, IP type): one copy of each, whatever the number of entries. */
  label(text: string): number {
    let id = this.#labelIds.get(text);
    if (id === undefined) {
      id = this.#labels.length;
      this.#labels.push(text);
      this.#labelIds.set(text, id);
    }
    return id;
  }

  labelOf(id: number): string {
    return this.#labels[id];
  }

  /** The id of a label if any entry ever had it (undefined: no entry matches it). */
  knownLabel(text: string): number | undefined {
    return this.#labelIds.get(text);
  }

  perHour(s: number): bigint {
    return this.has(s, HOUR_BIG) ? (this.#bigPrices.get(s) as [bigint, bigint])[0] : this.#perHour[s];
  }

  perGiB(s: number): bigint {
    return this.has(s, GIB_BIG) ? (this.#bigPrices.get(s) as [bigint, bigint])[1] : this.#perGiB[s];
  }

  setPrices(s: number, perHour: bigint, perGiB: bigint): void {
    const hourBig = perHour < 0n || perHour >= U64;
    const gibBig = perGiB < 0n || perGiB >= U64;
    this.set(s, HOUR_BIG, hourBig);
    this.set(s, GIB_BIG, gibBig);
    this.#perHour[s] = hourBig ? 0n : perHour;
    this.#perGiB[s] = gibBig ? 0n : perGiB;
    if (hourBig || gibBig) this.#bigPrices.set(s, [perHour, perGiB]);
    else this.#bigPrices.delete(s);
  }

  /** Keeps the signature and signed text of a slot (written in place when its size did not change). */
  setBody(s: number, signature: string, text: string): void {
    const binary = LOWER_HEX_SIGNATURE.test(signature);
    const sigBytes = binary ? 64 : Buffer.byteLength(signature);
    const packed = packText(text);
    const kept = packed ?? text;
    const bytes = sigBytes + Buffer.byteLength(kept);
    let at = this.#bodyAt[s];
    if (this.#bodyBytes[s] !== bytes) {
      this.clearBody(s);
      at = this.#reserve(bytes);
    }
    this.#stamps[s]++;
    if (binary) this.#arena.write(signature.slice(2), at, "hex");
    else this.#arena.write(signature, at, "utf8");
    this.#arena.write(kept, at + sigBytes, "utf8");
    this.set(s, SIG_BINARY, binary);
    this.set(s, TEXT_PACKED, packed !== null);
    this.#bodyAt[s] = at;
    this.#bodyBytes[s] = bytes;
    this.#signatureBytes[s] = sigBytes;
  }

  stampOf(s: number): number {
    return this.#stamps[s];
  }

  generationOf(s: number): number {
    return this.generations[s];
  }

  /**
   * Where a slot's signature and text are in the texts' buffer (page-json.ts writes a page from it
   * without making strings); valid until the index takes another write. Null when it holds none.
   */
  bodyOf(s: number): BodyView | null {
    if (this.#bodyBytes[s] === 0) return null;
    const at = this.#bodyAt[s];
    return {
      arena: this.#arena,
      signatureAt: at,
      signatureEnd: at + this.#signatureBytes[s],
      binarySignature: this.has(s, SIG_BINARY),
      textEnd: at + this.#bodyBytes[s],
      packed: this.has(s, TEXT_PACKED),
    };
  }

  clearBody(s: number): void {
    this.#stamps[s]++;
    this.#arenaGarbage += this.#bodyBytes[s];
    this.#bodyBytes[s] = 0;
    this.#signatureBytes[s] = 0;
  }

  signatureOf(s: number): string {
    if (this.#bodyBytes[s] === 0) return "";
    const at = this.#bodyAt[s];
    if (this.has(s, SIG_BINARY)) return `0x${this.#arena.toString("hex", at, at + 64)}`;
    return this.#arena.toString("utf8", at, at + this.#signatureBytes[s]);
  }

  textOf(s: number): string {
    if (this.#bodyBytes[s] === 0) return "";
    const at = this.#bodyAt[s];
    const kept = this.#arena.toString("utf8", at + this.#signatureBytes[s], at + this.#bodyBytes[s]);
    return this.has(s, TEXT_PACKED) ? unpackFast(kept) : kept;
  }

  /** Whether the slot holds exactly this signed text (whatever its signature). */
  textIs(s: number, text: string): boolean {
    return this.#bodyBytes[s] !== 0 && this.textOf(s) === text;
  }

  /** A copy of what the slot holds, as queries return it. */
  entry(s: number): IndexEntry {
    const key = this.keys[s] as string;
    const e = new IndexEntry(key, this.revision[s], { table: this, slot: s, stamp: this.#stamps[s] });
    e.listed = this.has(s, LISTED);
    e.withdrawn = this.has(s, WITHDRAWN);
    e.createdAt = this.createdAt[s];
    e.expiresAt = this.expiresAt[s];
    e.liveUntil = this.liveUntil[s];
    e.keepUntil = this.keepUntil[s];
    e.serviceType = key.slice(43);
    e.country = this.labelOf(this.country[s]) ?? "";
    e.ipType = this.labelOf(this.ipType[s]) ?? "";
    e.perHour = this.perHour(s);
    e.perGiB = this.perGiB(s);
    e.hourBand = this.hourBand[s];
    e.gibBand = this.gibBand[s];
    e.bandwidthMbps = this.bandwidthMbps[s];
    e.ipv6 = this.has(s, IPV6);
    e.accessPolicy = this.has(s, ALLOWLIST) ? "allowlist" : "open";
    return e;
  }

  /** Bytes of the texts' buffer: in use by held texts, and reserved in all (for the bench and tests). */
  get textBytes(): { held: number; used: number; reserved: number } {
    return { held: this.#arenaUsed - this.#arenaGarbage, used: this.#arenaUsed, reserved: this.#arena.length };
  }

  #reserve(bytes: number): number {
    if (this.#arenaUsed + bytes > this.#arena.length) {
      const held = this.#arenaUsed - this.#arenaGarbage;
      // Compact when at least half is no longer held; grow otherwise.
      const size = Math.max(64 * 1024, Math.ceil((held + bytes) * GROWTH));
      this.#compactInto(this.#arenaGarbage >= held ? Math.max(size, this.#arena.length) : Math.max(size, Math.ceil(this.#arena.length * GROWTH)));
    }
    const at = this.#arenaUsed;
    this.#arenaUsed += bytes;
    return at;
  }

  /** Copies every held text into a new buffer of `size` bytes, in slot order, dropping the rest. */
  #compactInto(size: number): void {
    const next = Buffer.allocUnsafeSlow(size);
    let used = 0;
    for (const s of this.#slots.values()) {
      const bytes = this.#bodyBytes[s];
      if (bytes === 0) continue;
      const at = this.#bodyAt[s];
      this.#arena.copy(next, used, at, at + bytes);
      this.#bodyAt[s] = used;
      used += bytes;
    }
    this.#arena = next;
    this.#arenaUsed = used;
    this.#arenaGarbage = 0;
  }

  #grow(capacity: number): void {
    const grown = <T extends Float64Array | Uint32Array | Uint16Array | Uint8Array | BigUint64Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(capacity);
      b.set(a as never);
      return b;
    };
    this.revision = grown(this.revision);
    this.createdAt = grown(this.createdAt);
    this.expiresAt = grown(this.expiresAt);
    this.liveUntil = grown(this.liveUntil);
    this.keepUntil = grown(this.keepUntil);
    this.bandwidthMbps = grown(this.bandwidthMbps);
    this.#perHour = grown(this.#perHour);
    this.#perGiB = grown(this.#perGiB);
    this.hourBand = grown(this.hourBand);
    this.gibBand = grown(this.gibBand);
    this.country = grown(this.country);
    this.ipType = grown(this.ipType);
    this.flags = grown(this.flags);
    this.#bodyAt = grown(this.#bodyAt);
    this.#bodyBytes = grown(this.#bodyBytes);
    this.#signatureBytes = grown(this.#signatureBytes);
    this.#stamps = grown(this.#stamps);
    this.generations = grown(this.generations);
    this.#capacity = capacity;
  }
}
