import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { MystError } from "../errors/MystError";
import { recoverClaimedSigner, verifyBytes, type SignerCheck, type SignerDirectory } from "../identity/protocol-signature";

/** Sent to a worker: check `signature` over `bytes` against `known`, or recover the signer claimed. */
export interface SignatureTask {
  id: number;
  claimed: string;
  bytes: Uint8Array;
  signature: Uint8Array;
  known?: Uint8Array;
}

export type SignatureResult = { id: number; valid: boolean } | { id: number; recovered: Uint8Array | null };

export class SignatureWorkersError extends MystError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("VERIFIER_FAILED", message, options);
  }
}

/** Tasks sent to one worker in one message: enough to amortize the message, few enough to spread. */
const BATCH = 32;

type Queued = { task: SignatureTask; resolve: (r: SignatureResult) => void; reject: (e: Error) => void };

/**
 * A pool of worker threads that check signatures (node:worker_threads), so discovery's ingest uses
 * every core: the same contract as `checkSigner` (known key first, else recover and ask the
 * registry), with the curve work off the main thread. `threads: 0` checks on the calling thread.
 *
 * Tasks are sharded by the claimed signer's address: one provider's signatures always go to the same
 * thread, so each thread's cache of decoded public keys holds its own share of the providers and a
 * key is decoded once per process (decoding costs about half a verification; with every thread
 * decoding every key, a second thread added decoding work as well as verifying capacity).
 */
export class SignatureWorkers {
  readonly threads: number;
  #workers: { worker: Worker; pending: number; queue: Queued[]; ready: Promise<void> }[] = [];
  readonly #waiting = new Map<number, { resolve: (r: SignatureResult) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #scheduled = false;
  #users = 0;

  constructor(threads = defaultThreads()) {
    this.threads = Math.max(0, Math.floor(threads));
  }

  /**
   * Makes the pool usable (reference-counted: a pool may serve several services; each stop() releases
   * one). The threads themselves start with the first signature to check: a replica that loads a
   * bucket of marked values and hears no announcement needs none (each is an isolate of its own, some
   * 8 MB), and a started thread takes the tasks posted while it loads.
   */
  async start(): Promise<void> {
    this.#users++;
  }

  /** Starts the threads now, and resolves once each has loaded its code (benchmarks: no start-up in what they time). */
  async warmUp(): Promise<void> {
    if (this.threads === 0) return;
    if (this.#workers.length === 0) this.#spawn();
    await Promise.all(this.#workers.map((w) => w.ready));
  }

  #spawn(): void {
    for (let i = 0; i < this.threads; i++) {
      const worker = spawnWorker();
      worker.unref();
      let loaded!: () => void;
      const slot = { worker, pending: 0, queue: [] as Queued[], ready: new Promise<void>((resolve) => (loaded = resolve)) };
      worker.on("message", (m: unknown) => {
        if (m === "ready") return loaded();
        for (const r of m as SignatureResult[]) {
          slot.pending--;
          const w = this.#waiting.get(r.id);
          this.#waiting.delete(r.id);
          w?.resolve(r);
        }
        this.#pump();
      });
      worker.once("error", (err) => this.#failAll(new SignatureWorkersError(`a signature worker failed: ${err.message}`, { cause: err })));
      this.#workers.push(slot);
    }
  }

  async stop(): Promise<void> {
    if (--this.#users > 0) return;
    this.#users = 0;
    this.#failAll(new SignatureWorkersError("the signature pool stopped"));
    const workers = this.#workers.splice(0);
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }

  /** `checkSigner` with the curve work in a worker thread. */
  async checkSigner(claimed: string, bytes: Uint8Array, signature: Uint8Array, directory: SignerDirectory): Promise<SignerCheck> {
    const known = directory.knownPublicKeyOf?.(claimed);
    const r = await this.#run({ id: 0, claimed, bytes, signature, known });
    if ("valid" in r) return r.valid ? { publicKey: known! } : { fail: "bad-signature" };
    if (!r.recovered) return { fail: "bad-signature" };
    const recovered = Buffer.from(r.recovered);
    const registered = await directory.publicKeyOf(claimed);
    if (!registered) return { fail: "unregistered" };
    return recovered.equals(Buffer.from(registered)) ? { publicKey: registered } : { fail: "bad-signature" };
  }

  #run(task: SignatureTask): Promise<SignatureResult> {
    task.id = this.#nextId++;
    if (this.threads === 0 || this.#users === 0) return Promise.resolve(checkHere(task));
    if (this.#workers.length === 0) this.#spawn();
    return new Promise((resolve, reject) => {
      this.#workers[shardOf(task.claimed, this.#workers.length)].queue.push({ task, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  /** Hands each worker its queued tasks, a batch at a time, keeping about two batches in flight per worker. */
  #pump(): void {
    for (const slot of this.#workers) {
      while (slot.queue.length > 0 && slot.pending < 2 * BATCH) {
        const batch = slot.queue.splice(0, BATCH);
        for (const b of batch) this.#waiting.set(b.task.id, b);
        slot.pending += batch.length;
        slot.worker.postMessage(batch.map((b) => b.task));
      }
    }
  }

  #failAll(err: Error): void {
    for (const slot of this.#workers) for (const q of slot.queue.splice(0)) q.reject(err);
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
  }
}

/** The thread of a signer: its address's last 32 bits (uniform: an address is a hash) modulo the threads. */
function shardOf(address: string, threads: number): number {
  const n = Number.parseInt(address.slice(-8), 16);
  return Number.isNaN(n) ? 0 : n % threads;
}

function checkHere(t: SignatureTask): SignatureResult {
  if (t.known) return { id: t.id, valid: verifyBytes(t.known, t.bytes, t.signature) };
  return { id: t.id, recovered: recoverClaimedSigner(t.claimed, t.bytes, t.signature) };
}

export function defaultThreads(): number {
  return typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
}

/** The worker runs the compiled .js next to this file, or the .ts through ts-node (tests, scripts). */
function spawnWorker(): Worker {
  if (__filename.endsWith(".ts")) {
    const file = path.join(__dirname, "signature-worker.ts");
    const tsNode = require.resolve("ts-node");
    return new Worker(`require(${JSON.stringify(tsNode)}).register({ transpileOnly: true }); require(${JSON.stringify(file)});`, { eval: true });
  }
  return new Worker(path.join(__dirname, "signature-worker.js"));
}
