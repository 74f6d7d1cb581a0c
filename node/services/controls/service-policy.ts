import type { Logger } from "../../log/logger";
import { CONTROLS_DEFAULTS } from "../../config/defaults";
import { AccessList } from "./access-list";
import { checkEgress } from "./egress";
import { Schedule } from "./schedule";
import type { ControlsSettings } from "./settings-schema";
import { checkTrafficCap, type TrafficCapSettings } from "./traffic-cap";

/** How long running sessions are told before a reached cap ends them, unless the settings say. */
export const DEFAULT_NOTICE_MS = CONTROLS_DEFAULTS.noticeSeconds * 1000;

/**
 * The admission side of a service's controls, made once from its settings (every value checked
 * here, so a bad one is refused when the service starts): when it is offered (schedule), to whom
 * (access lists), up to how much traffic (caps), and how much notice running sessions get.
 */
export class ServicePolicy {
  readonly schedule: Schedule;
  readonly access?: AccessList;
  readonly cap: TrafficCapSettings;
  readonly noticeMs: number;
  readonly #accessListeners: (() => void)[] = [];

  constructor(
    readonly settings: ControlsSettings = {},
    options: { log?: Logger } = {},
  ) {
    this.schedule = new Schedule(settings.schedule ?? []);
    this.cap = checkTrafficCap(settings.trafficCap ?? {});
    checkEgress(settings.egress);
    this.noticeMs = settings.noticeSeconds === undefined ? DEFAULT_NOTICE_MS : settings.noticeSeconds * 1000;
    const a = settings.access;
    if (a && (a.allow || a.deny || a.allowFile || a.denyFile)) this.access = new AccessList({ ...a, log: options.log, onChange: () => this.#accessChanged() });
  }

  /** Called when an access list file changed (running sessions are checked again). */
  onAccessChange(listener: () => void): void {
    this.#accessListeners.push(listener);
  }

  #accessChanged(): void {
    for (const l of this.#accessListeners) l();
  }

  get capped(): boolean {
    return this.cap.dailyGiB !== undefined || this.cap.monthlyGiB !== undefined;
  }

  start(): void {
    this.access?.start();
  }

  stop(): void {
    this.access?.stop();
  }
}
