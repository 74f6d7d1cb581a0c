import { type BodyView, type EntryTable, pieceOf } from "./index-entry";

/** A proposal's quality as a page item carries it (null: no `quality` field). */
export type ItemQuality = { score: number | null; receipts: number } | null;

/** Each code's piece as bytes: raw (inside the proposal object) and escaped (inside the signed text's JSON string). */
const RAW_PIECES: (Buffer | undefined)[] = [];
const ESCAPED_PIECES: (Buffer | undefined)[] = [];
for (let c = 0; c < 32; c++) {
  const piece = pieceOf(c);
  if (piece === "") continue;
  RAW_PIECES[c] = Buffer.from(piece, "utf8");
  ESCAPED_PIECES[c] = Buffer.from(JSON.stringify(piece).slice(1, -1), "utf8");
}
/** A control character as JSON.stringify writes it inside a string. */
const ESCAPED_CONTROL = Array.from({ length: 32 }, (_, c) => Buffer.from(JSON.stringify(String.fromCharCode(c)).slice(1, -1), "latin1"));
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Writes a page of proposals as the API serves it — `{"proposals":[{"signed":{"proposal":<the signed
 * text as a JSON string>,"signature":…},"proposal":<the text>,"quality":…},…],"next_cursor":…}` —
 * byte for byte what building it from each entry's strings gave (`IndexEntry.json`), straight from
 * the index's texts' buffer into one reused scratch buffer: no string or object per proposal (a page of
 * 100 made 100–200 KB of garbage, a young-generation collection every 7–8 queries). The result is a
 * copy of exactly the page's bytes.
 */
export class PageWriter {
  /** Made at the first page (an empty replica holds none), then grown as pages need and reused. */
  #out = Buffer.allocUnsafeSlow(0);
  #n = 0;

  page(t: EntryTable, slots: readonly number[], quality: (slot: number) => ItemQuality, next: string | null): Buffer {
    this.#n = 0;
    this.#ascii('{"proposals":[');
    for (let i = 0; i < slots.length; i++) {
      if (i > 0) this.#byte(0x2c);
      this.#item(t.bodyOf(slots[i]), quality(slots[i]));
    }
    this.#ascii('],"next_cursor":');
    if (next === null) this.#ascii("null");
    else this.#string(Buffer.from(next, "utf8"));
    this.#byte(0x7d);
    const body = Buffer.allocUnsafe(this.#n);
    this.#out.copy(body, 0, 0, this.#n);
    return body;
  }

  #item(b: BodyView | null, q: ItemQuality): void {
    this.#ascii('{"signed":{"proposal":"');
    if (b) this.#text(b, true);
    this.#ascii('","signature":"');
    if (b && b.binarySignature) {
      this.#ascii("0x");
      this.#room(128);
      this.#n += this.#out.write(b.arena.toString("hex", b.signatureAt, b.signatureEnd), this.#n, "latin1");
    } else if (b) this.#escaped(b.arena, b.signatureAt, b.signatureEnd);
    this.#ascii('"},"proposal":');
    if (b) this.#text(b, false);
    if (q) this.#ascii(`,"quality":{"score":${q.score},"receipts":${q.receipts}}`);
    this.#byte(0x7d);
  }

  /** The signed text, its pieces unpacked: as it is (`quoted` false) or as the inside of a JSON string. */
  #text(b: BodyView, quoted: boolean): void {
    const a = b.arena;
    const pieces = quoted ? ESCAPED_PIECES : RAW_PIECES;
    // Room for the worst case (each byte a piece or a six-byte escape), then plain loops on locals.
    this.#room((b.textEnd - b.signatureEnd) * (quoted ? 80 : 64));
    const out = this.#out;
    let n = this.#n;
    for (let i = b.signatureEnd; i < b.textEnd; i++) {
      const c = a[i];
      if (c >= 32 && (!quoted || (c !== QUOTE && c !== BACKSLASH))) {
        out[n++] = c;
        continue;
      }
      const piece = b.packed && c < 32 ? pieces[c] : undefined;
      const bytes = piece ?? (c < 32 ? ESCAPED_CONTROL[c] : undefined);
      if (bytes && (piece || quoted)) for (let j = 0; j < bytes.length; j++) out[n++] = bytes[j];
      else if (quoted) {
        out[n++] = BACKSLASH;
        out[n++] = c;
      } else out[n++] = c;
    }
    this.#n = n;
  }

  #escaped(a: Buffer, from: number, to: number): void {
    let run = from;
    for (let i = from; i < to; i++) {
      const c = a[i];
      if (c >= 32 && c !== QUOTE && c !== BACKSLASH) continue;
      this.#copy(a, run, i);
      run = i + 1;
      this.#escapedByte(c);
    }
    this.#copy(a, run, to);
  }

  #escapedByte(c: number): void {
    if (c < 32) this.#copy(ESCAPED_CONTROL[c], 0, ESCAPED_CONTROL[c].length);
    else {
      this.#byte(BACKSLASH);
      this.#byte(c);
    }
  }

  /** A JSON string of UTF-8 bytes (quotes included). */
  #string(bytes: Buffer): void {
    this.#byte(QUOTE);
    this.#escaped(bytes, 0, bytes.length);
    this.#byte(QUOTE);
  }

  #ascii(text: string): void {
    this.#room(text.length);
    this.#n += this.#out.write(text, this.#n, "latin1");
  }

  #byte(c: number): void {
    this.#room(1);
    this.#out[this.#n++] = c;
  }

  #copy(from: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.#room(end - start);
    // Byte by byte: the runs are short (a field between two pieces), and Buffer#copy costs more per call than it saves.
    const out = this.#out;
    let n = this.#n;
    for (let i = start; i < end; i++) out[n++] = from[i];
    this.#n = n;
  }

  #room(bytes: number): void {
    if (this.#n + bytes <= this.#out.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(256 * 1024, this.#out.length * 2, this.#n + bytes));
    this.#out.copy(grown, 0, 0, this.#n);
    this.#out = grown;
  }
}
