import path from "node:path";
import { CONTROLS_DEFAULTS } from "../config/defaults";
import type { Command } from "commander";
import { MystError } from "../errors/MystError";
import type { NodeClient } from "../api/client";
import type { ControlsSettings, ServiceView } from "../api/schemas";
import type { Output } from "./output";

/** The provider controls of `myst service start` (any service type; bandwidth and egress apply to tunnels). */
export function controlsOptions(cmd: Command): Command {
  return cmd
    .option("--daily-cap <size>", "stop selling for the rest of the day past this much traffic (all services): GiB, or with a unit (500MiB, 2GiB, 1TiB)")
    .option("--monthly-cap <size>", "the same per month")
    .option("--month-start <day>", "the day of the month a monthly cap's period starts (1-28)", String(CONTROLS_DEFAULTS.monthStartDay))
    .option(
      "--cap-notice <seconds>",
      "when a cap is reached, running sessions are told and end this many seconds later",
      String(CONTROLS_DEFAULTS.noticeSeconds),
    )
    .option("--service-bandwidth <mbps>", "limit all sessions of the service together, Mbit/s each direction (each session is limited to --bandwidth)")
    .option("--schedule <window...>", 'offer the service only in these local-time windows, e.g. "mon-fri 08:00-22:00" "sat,sun 10:00-14:00"')
    .option("--allow <identity...>", "only these consumer identities may connect")
    .option("--allow-file <file>", "only the identities in this file (one a line, # comments) may connect; re-read when it changes")
    .option("--deny <identity...>", "these consumer identities may not connect")
    .option("--deny-file <file>", "nor those in this file; re-read when it changes")
    .option("--allow-smtp", "let consumers send mail directly on TCP 25 (default: blocked, to keep this address off block lists)")
    .option("--block-port <port...>", "destination ports consumers may not reach, TCP and UDP (e.g. 6881-6889)")
    .option("--block-cidr <cidr...>", "destination networks consumers may not reach");
}

const UNITS: Record<string, number> = { "": 1, gib: 1, g: 1, mib: 1 / 1024, m: 1 / 1024, tib: 1024, t: 1024 };

/** A size flag in GiB: "2", "1.5GiB", "500MiB", "1TiB". */
export function gibOf(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) throw new MystError("BAD_FLAG", `${flag} "${value}" is not a size (e.g. 2, 1.5GiB, 500MiB)`);
  return Number(m[1]) * unit;
}

const list = (v: unknown): string[] | undefined => (v === undefined ? undefined : typeof v === "string" ? [v] : (v as string[]));

/** The controls the flags ask for; undefined when none. Values are checked again by the node. */
export function controlsFromFlags(opts: Record<string, unknown>, given: (flag: string) => boolean): ControlsSettings | undefined {
  const c: ControlsSettings = {};
  const number = (flag: string, key: string, integer = false): number => {
    const n = Number(opts[key]);
    if (!(n >= 0) || (integer && !Number.isInteger(n))) throw new MystError("BAD_FLAG", `${flag} "${opts[key]}" is not a${integer ? " whole" : ""} number`);
    return n;
  };
  if (opts.dailyCap !== undefined || opts.monthlyCap !== undefined) {
    c.trafficCap = {
      ...(opts.dailyCap !== undefined ? { dailyGiB: gibOf(String(opts.dailyCap), "--daily-cap") } : {}),
      ...(opts.monthlyCap !== undefined ? { monthlyGiB: gibOf(String(opts.monthlyCap), "--monthly-cap") } : {}),
      ...(given("monthStart") ? { monthStartDay: number("--month-start", "monthStart", true) } : {}),
    };
  }
  if (given("capNotice")) c.noticeSeconds = number("--cap-notice", "capNotice", true);
  if (opts.serviceBandwidth !== undefined) c.serviceBandwidthMbps = number("--service-bandwidth", "serviceBandwidth");
  if (opts.schedule !== undefined) c.schedule = list(opts.schedule);
  const allow = list(opts.allow);
  const deny = list(opts.deny);
  if (allow || deny || opts.allowFile || opts.denyFile) {
    c.access = {
      ...(allow ? { allow } : {}),
      ...(deny ? { deny } : {}),
      // The node reads them: from its own directory, so a relative path is made absolute here.
      ...(opts.allowFile ? { allowFile: path.resolve(String(opts.allowFile)) } : {}),
      ...(opts.denyFile ? { denyFile: path.resolve(String(opts.denyFile)) } : {}),
    };
  }
  const ports = list(opts.blockPort);
  const cidrs = list(opts.blockCidr);
  if (opts.allowSmtp || ports || cidrs) {
    c.egress = {
      ...(opts.allowSmtp ? { allowSmtp: true } : {}),
      ...(ports ? { blockPorts: ports.map((p) => (/^\d+$/.test(p) ? Number(p) : p)) } : {}),
      ...(cidrs ? { blockCidrs: cidrs } : {}),
    };
  }
  return Object.keys(c).length ? c : undefined;
}

/** The services of a running node that have controls (caps, schedule, access), for `myst status`. */
export async function controlledServices(node: NodeClient): Promise<ServiceView[]> {
  const { services } = await node.services();
  return services.filter((s) => s.controls && (s.controls.trafficCap || s.controls.schedule || s.controls.access || !s.controls.offered));
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** One line per service and cap: offered or withdrawn (why), used and remaining, when it resets. */
export function controlsLines(services: ServiceView[]): string[] {
  const lines: string[] = [];
  for (const s of services) {
    const c = s.controls!;
    lines.push(`selling:  ${s.type} ${c.offered ? "offered" : `withdrawn (${c.withdrawnBecause})`}${c.access ? `, access ${c.access.policy}` : ""}`);
    for (const period of ["daily", "monthly"] as const) {
      const u = c.trafficCap?.[period];
      if (u) lines.push(`  ${period} cap: ${mib(u.usedBytes)} used of ${mib(u.capBytes)}, ${mib(u.remainingBytes)} left, resets ${u.resetsAt}`);
    }
    if (c.schedule)
      lines.push(
        `  schedule: ${c.schedule.open ? "open" : "closed"} (${c.schedule.windows.join("; ")})${c.schedule.nextChange ? `, changes ${c.schedule.nextChange}` : ""}`,
      );
  }
  return lines;
}

/** `out` with the provider's controls added: lines after the human output, a `selling` field in JSON. */
export function withControls(out: Output, services: ServiceView[]): Output {
  if (services.length === 0) return out;
  return {
    ...out,
    result: (data, human) =>
      out.result({ ...(data as object), selling: services.map((s) => ({ type: s.type, controls: s.controls })) }, () => [
        ...human(),
        ...controlsLines(services),
      ]),
  };
}
