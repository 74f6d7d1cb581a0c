import type { NodeCore } from "../../daemon/core";
import type { Offer } from "../../daemon/provider-node";
import type { ControlsStatus } from "../../daemon/provider-controls";
import type { MystError } from "../../errors/MystError";
import { capabilityReport, checkServiceSpec, servicePolicy, startProviderService, type ServiceSpec } from "../../services/catalog";
import type { ControlsSettings } from "../../services/controls/settings-schema";
import { SessionError } from "../../session/errors";
import { offerFromJson, offerToJson, ServicesFile, type OfferJson, type SavedService } from "./services-file";

/** A running service as `GET /v1/services` shows it. */
export interface ServiceView {
  type: string;
  spec: ServiceSpec;
  offer: OfferJson;
  announcement: { state: string; lastError?: string; expiresAt?: string };
  sessions: number;
  /** Its controls now: offered or withdrawn (why), cap usage, schedule, access policy. */
  controls?: ControlsStatus;
}

/** A service to start, as the API's body gives it (the settings are checked here, across fields). */
export interface ServiceInput {
  type: string;
  controls?: ControlsSettings;
  /** The type's settings under its name (`wireguard: {…}`), as its registry entry's schema says. */
  [settings: string]: unknown;
}

/**
 * The services this node sells, one per type, added and removed while it runs. Those started
 * through the API are remembered in `<data-dir>/services.json` and started again when the daemon
 * restarts (not by an ephemeral, foreground node).
 */
export class ServiceOps {
  readonly #core: NodeCore;
  readonly #specs = new Map<string, { spec: ServiceSpec; offer: OfferJson }>();
  /**
   * What services.json says, by type: changed only by the operator's start and stop. A remembered
   * service that fails to start again stays remembered (the file is the operator's configuration).
   */
  readonly #remembered = new Map<string, SavedService>();
  readonly #file: ServicesFile;
  readonly #starting = new Set<string>();

  constructor(core: NodeCore) {
    this.#core = core;
    this.#file = new ServicesFile(core.config.dataDir);
  }

  /** What services.json holds (read before anything starts: a file that is not a JSON list stops the start). */
  readRemembered(): { services: SavedService[]; problems: string[] } {
    return this.#core.options.ephemeral ? { services: [], problems: [] } : this.#file.read();
  }

  /** Starts the remembered services again; one that fails is logged and stays remembered. */
  async restart(saved: { services: SavedService[]; problems: string[] }): Promise<void> {
    const { log, metrics } = this.#core;
    // What it may sell, said once at the start: a provider run as its own user with a few capabilities learns here what it lacks.
    const capabilities = capabilityReport();
    log.info(`capabilities held: ${capabilities.held} (passed on to the programs it starts: ${capabilities.passedOn})`);
    for (const r of capabilities.refused) log.warn({ service: r.type }, `cannot sell ${r.type}: ${r.reason}`);
    for (const problem of saved.problems) {
      log.error({ file: this.#file.file, problem, keptAs: `${this.#file.file}.invalid` }, "a remembered service is invalid; not started");
      metrics.error("service", "SERVICES_FILE_INVALID");
    }
    for (const s of saved.services) this.#remembered.set(s.spec.type, s);
    for (const s of saved.services) {
      try {
        await this.start(s.spec, offerFromJson(s.offer), { remember: false });
      } catch (err) {
        log.error({ service: s.spec.type, code: (err as MystError).code, err: (err as Error).message }, "could not restart a remembered service");
        metrics.error("service", (err as MystError).code ?? "INTERNAL");
      }
    }
  }

  list(): ServiceView[] {
    const online = this.#core.maybeOnline;
    if (!online) return [];
    const live = online.provider.sessions.list().filter((s) => s.state !== "ended");
    return online.provider.selling().map((s) => {
      const saved = this.#specs.get(s.type)!;
      return {
        type: s.type,
        spec: saved.spec,
        offer: saved.offer,
        announcement: {
          state: s.announcement.state,
          ...(s.announcement.lastError ? { lastError: s.announcement.lastError } : {}),
          ...(s.announcement.expiresAt ? { expiresAt: new Date(s.announcement.expiresAt).toISOString() } : {}),
        },
        sessions: live.filter((x) => x.serviceType === s.type).length,
        ...(s.controls ? { controls: s.controls } : {}),
      };
    });
  }

  async start(input: ServiceInput, offer: Offer, options: { remember?: boolean } = {}): Promise<ServiceView> {
    const spec = checkServiceSpec(input);
    if (this.#specs.has(spec.type) || this.#starting.has(spec.type))
      throw new SessionError("SERVICE_EXISTS", `a ${spec.type} service is already running: stop it first`);
    const { config, log } = this.#core;
    // Two requests for one type must not both start it (they would share its files and port).
    this.#starting.add(spec.type);
    try {
      const { registry } = await this.#core.chain();
      const { provider, key } = this.#core.online();
      // The policy first: a bad schedule or an unreadable access list stops the start before anything runs.
      const policy = servicePolicy(spec, log);
      const service = await startProviderService(spec, {
        dataDir: config.dataDir,
        directory: registry,
        identity: key.address,
        log,
        bandwidthMbps: offer.bandwidthMbps,
      });
      try {
        provider.addService({ service, offer, policy });
      } catch (err) {
        policy.stop();
        await service.stop?.().catch(() => undefined);
        throw err;
      }
    } finally {
      this.#starting.delete(spec.type);
    }
    const saved = { spec, offer: offerToJson(offer) };
    this.#specs.set(spec.type, saved);
    if (options.remember !== false && !this.#core.options.ephemeral) {
      this.#remembered.set(spec.type, saved as SavedService);
      this.#writeFile();
    }
    log.info({ service: spec.type }, "service started");
    return this.list().find((s) => s.type === spec.type)!;
  }

  async stop(type: string): Promise<{ type: string; stopped: true }> {
    if (!this.#specs.has(type)) {
      // Remembered but not running (it failed to start again): stopping it forgets it.
      if (!this.#remembered.delete(type)) throw new SessionError("SERVICE_UNKNOWN", `no ${type} service is running`);
      this.#writeFile();
      return { type, stopped: true };
    }
    const service = await this.#core.online().provider.removeService(type);
    this.#specs.delete(type);
    if (!this.#core.options.ephemeral && this.#remembered.delete(type)) this.#writeFile();
    await service.stop?.();
    this.#core.log.info({ service: type }, "service stopped");
    return { type, stopped: true };
  }

  /** The provider side stops: the tunnel servers first (nothing unbilled flows while the last promises settle, bounded), then the provider. */
  async stopSelling(): Promise<void> {
    const { provider } = this.#core.online();
    const running = await Promise.all([...this.#specs.keys()].map((type) => provider.removeService(type).catch(() => undefined)));
    await Promise.all(running.map((s) => s?.stop?.().catch(() => undefined)));
    await provider.stop();
  }

  #writeFile(): void {
    this.#file.write([...this.#remembered.values()]);
  }
}
