import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { PromiseDigests, vaultDomain } from "../../node/chain/eip712";
import { IdentityKey } from "../../node/identity/key";
import { type Receipt, type SignedReceipt, signReceipt, STAGES } from "../../node/quality/receipt";

export const VAULT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
export const CHAIN = 31337n;
export const CONSUMERS = 500;
const MYST = 10n ** 18n;
/** A cache file is used for 6 days: its receipts' times must stay inside the store's 7-day retention. */
const CACHE_DAYS = 6;

/** The same keys in every run (so signed receipts can be cached): a secret key from a name. */
export function benchKey(name: string): IdentityKey {
  for (let i = 0; ; i++) {
    try {
      return IdentityKey.fromHex(crypto.hash("sha256", `myst-bench-quality/${name}/${i}`, "hex"));
    } catch {
      // Not a valid scalar (practically never): the next one.
    }
  }
}

export interface QualityFixture {
  providers: IdentityKey[];
  consumers: IdentityKey[];
  /** The file of signed receipts, one JSON per line (made once, then reused). */
  file: string;
  /** Whether this run signed them (false: read from the cache). */
  signed: boolean;
  signMs: number;
}

/**
 * `receipts` signed receipts about `proposals` providers by 500 consumers, each backed by its
 * consumer's 0.1 MYST promise to one provider; one in five fails at some stage. Signing a million
 * takes minutes on one thread, so they are written once to `MYST_BENCH_QUALITY_CACHE` (default
 * /tmp/myst-bench-quality) and read from there by later runs for 6 days.
 */
export async function qualityFixture(proposals: number, receipts: number): Promise<QualityFixture> {
  const providers = Array.from({ length: proposals }, (_, i) => benchKey(`provider/${i}`));
  const consumers = Array.from({ length: CONSUMERS }, (_, i) => benchKey(`consumer/${i}`));
  const dir = process.env.MYST_BENCH_QUALITY_CACHE ?? path.join(os.tmpdir(), "myst-bench-quality");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `receipts-${proposals}-${receipts}.jsonl`);
  const fresh = fs.existsSync(file) && Date.now() - fs.statSync(file).mtimeMs < CACHE_DAYS * 86_400_000;
  if (fresh) return { providers, consumers, file, signed: false, signMs: 0 };
  const t0 = Date.now();
  const digests = new PromiseDigests(vaultDomain(CHAIN, VAULT));
  const promises = consumers.map((c, i) => {
    const to = providers[i % providers.length].address;
    return {
      provider: to.toLowerCase(),
      amount: MYST / 10n,
      signature: `0x${Buffer.from(c.signDigest(digests.digest(c.address, to, MYST / 10n))).toString("hex")}`,
    };
  });
  const out = fs.createWriteStream(`${file}.part`);
  const now = Date.now();
  for (let i = 0; i < receipts; i++) {
    const ci = i % CONSUMERS;
    const provider = providers[(i * 7919) % providers.length].address.toLowerCase();
    const own = promises[ci].provider === provider;
    const fail = i % 5 === 0 ? STAGES[i % STAGES.length] : null;
    const r: Receipt = {
      sessionId: `s${i}`,
      consumer: consumers[ci].address.toLowerCase(),
      provider,
      serviceType: "noop",
      path: "public",
      reached: fail ? (STAGES[STAGES.indexOf(fail) - 1] ?? null) : "throughput",
      failed: fail,
      connectMs: 100 + (i % 900),
      bytesIn: 1 << 20,
      bytesOut: 1 << 16,
      throughputKbps: 20_000 + (i % 80_000),
      advertisedMbps: 100,
      durationMs: 60_000,
      promisedWei: own && !fail ? 10n ** 15n : 0n,
      promise: promises[ci],
      at: now - (i % 3_600_000),
    };
    if (!out.write(`${JSON.stringify(signReceipt(consumers[ci], r))}\n`)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
    if (i > 0 && i % 100_000 === 0) console.log(`  signed ${i}`);
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  fs.renameSync(`${file}.part`, file);
  return { providers, consumers, file, signed: true, signMs: Date.now() - t0 };
}

/** The fixture's signed receipts, read from its file one at a time (none held beyond the line). */
export async function* signedReceipts(file: string): AsyncGenerator<SignedReceipt> {
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) if (line) yield JSON.parse(line) as SignedReceipt;
}
