import type { Broker } from "../broker/broker";
import type { IdentityKey } from "../identity/key";
import { silentLogger, type Logger } from "../log/logger";
import { signProposal, type Proposal } from "../proposal/proposal";
import { DISCOVERY_SUBJECTS, signUnregister, type AnnounceReply } from "./announcements";
import { backoffMs } from "../lifecycle/backoff";

export interface AnnouncerOptions {
  broker: Broker;
  key: IdentityKey;
  /** The proposal to announce, without times (the announcer stamps createdAt/expiresAt). */
  proposal: () => Omit<Proposal, "createdAt" | "expiresAt">;
  /** How often to re-announce. Default 30 s; each signed proposal lives three periods. */
  pingMs?: number;
  /** Backoff bounds while discovery refuses (e.g. identity not registered yet) or the broker is down. */
  retryMinMs?: number;
  retryMaxMs?: number;
  log?: Logger;
}

export type AnnouncerState = "idle" | "announcing" | "announced" | "retrying";

/**
 * The provider side of discovery: announces a freshly signed proposal when the service starts,
 * re-announces (ping) while it runs, unregisters on stop, and retries with backoff while its
 * identity is not yet registered or no discovery replica / broker answers.
 */
export class ProposalAnnouncer {
  state: AnnouncerState = "idle";
  lastError?: string;
  /** The proposal as last announced. */
  current?: Proposal;
  readonly #o: Required<Omit<AnnouncerOptions, "log">> & { log: Logger };
  #timer?: NodeJS.Timeout;
  /** Announcements refused in a row (the next retry waits longer). */
  #failures = 0;
  #stopped = true;

  constructor(options: AnnouncerOptions) {
    this.#o = {
      ...options,
      pingMs: options.pingMs ?? 30_000,
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 30_000,
      log: options.log ?? silentLogger,
    };
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#announce(DISCOVERY_SUBJECTS.register);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#unregister();
  }

  /**
   * Stops announcing and unregisters even if this announcer never announced: a provider that
   * starts with the service withdrawn (a cap reached, a schedule closed) takes back what an
   * earlier run may have left listed.
   */
  async withdraw(): Promise<void> {
    if (!this.#stopped) return this.stop();
    await this.#unregister();
  }

  async #unregister(): Promise<void> {
    const serviceType = this.#o.proposal().serviceType;
    try {
      this.#o.broker.publish(DISCOVERY_SUBJECTS.unregister, Buffer.from(JSON.stringify(signUnregister(this.#o.key, serviceType))));
      await this.#o.broker.flush();
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, "could not unregister the proposal; it expires by itself");
    }
    this.state = "idle";
  }

  /** Signs the proposal now, valid for three ping periods. */
  fresh(): Proposal {
    const now = Date.now();
    return { ...this.#o.proposal(), createdAt: now, expiresAt: now + 3 * this.#o.pingMs } as Proposal;
  }

  async #announce(subject: string): Promise<void> {
    if (this.#stopped) return;
    this.state = this.state === "announced" ? "announced" : "announcing";
    const proposal = this.fresh();
    const body = Buffer.from(JSON.stringify(signProposal(this.#o.key, proposal)));
    let reply: AnnounceReply;
    try {
      reply = JSON.parse(Buffer.from(await this.#o.broker.request(subject, body, 3000)).toString("utf8"));
    } catch (err) {
      reply = { ok: false, code: (err as { code?: string }).code ?? "BROKER_ERROR", message: (err as Error).message };
    }
    if (this.#stopped) return;
    if (reply.ok) {
      this.current = proposal;
      this.state = "announced";
      this.lastError = undefined;
      this.#failures = 0;
      this.#schedule(DISCOVERY_SUBJECTS.ping, this.#o.pingMs);
    } else {
      this.state = "retrying";
      this.lastError = `${reply.code}: ${reply.message}`;
      const retryInMs = backoffMs(++this.#failures, { baseMs: this.#o.retryMinMs, maxMs: this.#o.retryMaxMs });
      this.#o.log.warn({ code: reply.code, message: reply.message, retryInMs }, "proposal not announced; retrying");
      this.#schedule(DISCOVERY_SUBJECTS.register, retryInMs);
    }
  }

  #schedule(subject: string, ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#announce(subject), ms);
    this.#timer.unref();
  }
}
