import { Command, Option } from "commander";
import { weiToMyst } from "../values/myst";
import { IP_TYPES, OFFER_DEFAULTS, SERVICE_SETTINGS, SERVICE_TYPES, type StartServiceBody } from "../api/schemas";
import { PAYMENT_POLICY_DEFAULTS, parsePaymentPolicy } from "../config/payment-policy";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../values/myst";
import type { CommandContext } from "./context";
import { untilSignal } from "./long-running";
import { controlsFromFlags, controlsOptions } from "./controls";

type Ctx = (cmd: Command) => CommandContext;

/** --identity and the passphrase flags of a command that unlocks one identity. */
export function identityOptions(cmd: Command, who = "the identity"): Command {
  return cmd
    .addOption(new Option("--identity <address>", `${who} (default: the only one in the keystore)`))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"));
}

/** What a provider sells: where, what kind of IP, at what price. */
export function offerOptions(cmd: Command): Command {
  return cmd
    .option("--country <code>", "where the service's traffic exits (ISO 3166-1 alpha-2)", OFFER_DEFAULTS.country)
    .option("--city <name>", "city")
    .option("--asn <n>", "autonomous system number")
    .option("--isp <name>", "ISP name")
    .option("--ip-type <type>", `one of ${IP_TYPES.join(", ")}`, OFFER_DEFAULTS.ipType)
    .option("--price-per-hour <myst>", "price per hour of session, in MYST", OFFER_DEFAULTS.pricePerHour)
    .option("--price-per-gib <myst>", "price per GiB moved, in MYST", OFFER_DEFAULTS.pricePerGiB)
    .option(
      "--bandwidth <mbps>",
      "each session's bandwidth, Mbit/s each way: advertised and enforced on tunnels (0: no limit)",
      String(OFFER_DEFAULTS.bandwidthMbps),
    );
}

const POLICY_FLAGS = [
  "maxSessions",
  "invoiceEvery",
  "invoiceAbove",
  "maxUnpaid",
  "minVaultBalance",
  "minEscrow",
  "exposurePercent",
  "maxExposure",
  "settleThreshold",
  "settleFeePercent",
  "settlementFee",
  "settleViaRelayer",
  "settleOnSessionEnd",
];

/**
 * How a provider is paid, for all its services: invoicing, limits, settlement. A flag overrides the
 * config's `paymentPolicy`, whose defaults (config/payment-policy.ts) the help shows.
 */
export function paymentPolicyOptions(cmd: Command): Command {
  const d = Object.fromEntries(Object.entries(PAYMENT_POLICY_DEFAULTS).map(([k, v]) => [k, `(default ${v})`])) as Record<
    keyof typeof PAYMENT_POLICY_DEFAULTS,
    string
  >;
  return cmd
    .option("--max-sessions <n>", `sessions at once ${d.maxSessions}`)
    .option("--invoice-every <seconds>", `how often to invoice each session ${d.invoiceEvery}`)
    .option("--invoice-above <myst>", `also invoice as soon as this much more is due ${d.invoiceAbove}`)
    .option("--max-unpaid <myst>", `end a session when this much is unpaid ${d.maxUnpaid}`)
    .option("--min-vault-balance <myst>", `refuse consumers whose vault balance is below this ${d.minVaultBalance}`)
    .option("--min-escrow <myst>", `refuse consumers whose vault escrow is below this ${d.minEscrow}`)
    .option("--exposure-percent <n>", `let one consumer owe at most this % of its escrow beyond what is settled ${d.exposurePercent}`)
    .option("--max-exposure <myst>", `…and never more than this ${d.maxExposure}`)
    .option("--settle-threshold <myst>", `settle a pair when this much is unsettled, whatever the fee ${d.settleThreshold}`)
    .option(
      "--settle-fee-percent <n>",
      `send a settlement transaction (up to 20 pairs) once its fee is at most this % of what it carries ${d.settleFeePercent}`,
    )
    .option("--settlement-fee <myst>", `what one settlement transaction costs (with a relayer: the most it may take) ${d.settlementFee}`)
    .option("--settle-via-relayer <key-file>", "settle through this relayer account (a file with its 0x private key); the identity then needs no ETH")
    .option("--settle-on-session-end", "also settle a pair when its session ends, whatever the fee (default: only by the rules above, and at start/stop)");
}

/**
 * The `POST /v1/services` body of `service start` flags; the node checks the rest. Each type's
 * settings flags come from its entry in the registry (the API's SERVICE_SETTINGS).
 */
export function serviceBody(type: string, opts: Record<string, unknown>): StartServiceBody {
  const own = SERVICE_SETTINGS.find((s) => s.type === type);
  if (!own) throw new MystError("SERVICE_TYPE_UNKNOWN", `unknown service type "${type}": one of ${SERVICE_TYPES.join(", ")}`);
  const settings = settingsFromFlags(own, opts);
  const country = String(opts.country ?? "ZZ");
  if (!/^[A-Za-z]{2}$/.test(country)) throw new MystError("BAD_FLAG", `--country "${opts.country}" is not a two-letter code`);
  if (!IP_TYPES.includes(opts.ipType as (typeof IP_TYPES)[number])) throw new MystError("BAD_FLAG", `--ip-type must be one of ${IP_TYPES.join(", ")}`);
  const bandwidth = Number(opts.bandwidth);
  if (!(bandwidth >= 0)) throw new MystError("BAD_FLAG", `--bandwidth "${opts.bandwidth}" is not a number of Mbit/s`);
  const asn = opts.asn === undefined ? undefined : Number(opts.asn);
  if (asn !== undefined && !Number.isInteger(asn)) throw new MystError("BAD_FLAG", `--asn "${opts.asn}" is not a number`);
  const amount = (flag: string, value: unknown) => (value === undefined ? undefined : (mystToWei(String(value), flag), String(value)));
  return {
    type: type as StartServiceBody["type"],
    ...(settings ? { [type]: settings } : {}),
    offer: {
      country: country.toUpperCase(),
      ...(opts.city ? { city: opts.city as string } : {}),
      ...(asn !== undefined ? { asn } : {}),
      ...(opts.isp ? { isp: opts.isp as string } : {}),
      ipType: opts.ipType as (typeof IP_TYPES)[number],
      ...(opts.pricePerHour !== undefined ? { pricePerHour: amount("--price-per-hour", opts.pricePerHour) } : {}),
      ...(opts.pricePerGib !== undefined ? { pricePerGiB: amount("--price-per-gib", opts.pricePerGib) } : {}),
      bandwidthMbps: bandwidth,
    },
  };
}

type ServiceSettings = (typeof SERVICE_SETTINGS)[number];

/** A flag's option key as commander names it: `--allow-private-range <cidr...>` → `allowPrivateRange`. */
function optionKey(flag: string): string {
  return flag
    .split(" ")[0]
    .slice(2)
    .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The type's settings from its flags (numbers and lists as its schema wants them); a flag of another type is refused. */
function settingsFromFlags(own: ServiceSettings, opts: Record<string, unknown>): Record<string, unknown> | undefined {
  const mine = new Set(Object.values(own.flags));
  for (const other of SERVICE_SETTINGS)
    for (const flag of Object.values(other.flags))
      if (!mine.has(flag) && opts[optionKey(flag)] !== undefined)
        throw new MystError("BAD_FLAG", `${flag.split(" ")[0]} is for ${settingTypes(flag)}, not ${own.type}`);
  if (!own.settings) return undefined;
  const settings: Record<string, unknown> = {};
  for (const [name, flag] of Object.entries(own.flags)) {
    const value = opts[optionKey(flag)];
    const schema = own.settings.properties[name] as { type?: string; description?: string } | undefined;
    if (value === undefined) {
      if (own.settings.required?.includes(name)) throw new MystError("BAD_FLAG", `${flag.split(" ")[0]} is needed: ${schema?.description ?? name}`);
      continue;
    }
    if (schema?.type === "integer" || schema?.type === "number") {
      const n = Number(value);
      if (!Number.isFinite(n) || (schema.type === "integer" && !Number.isInteger(n)))
        throw new MystError("BAD_FLAG", `${flag.split(" ")[0]} "${value}" is not a ${schema.type === "integer" ? "whole " : ""}number`);
      settings[name] = n;
    } else if (schema?.type === "array") settings[name] = typeof value === "string" ? [value] : value;
    else settings[name] = value;
  }
  return settings;
}

/** The types that take a flag, for its help and errors: "openvpn, wireguard". */
function settingTypes(flag: string): string {
  return SERVICE_SETTINGS.filter((s) => Object.values(s.flags).includes(flag))
    .map((s) => s.type)
    .join(", ");
}

/** Every type's settings flags, once each: the help says which types take it, and what it means for each. */
function settingsOptions(cmd: Command): Command {
  const flags = [...new Set(SERVICE_SETTINGS.flatMap((s) => Object.values(s.flags)))];
  for (const flag of flags) {
    const meanings = SERVICE_SETTINGS.flatMap((s) =>
      Object.entries(s.flags)
        .filter(([, f]) => f === flag)
        .map(([name]) => ({ type: s.type, text: (s.settings?.properties[name] as { description?: string } | undefined)?.description ?? name })),
    );
    const same = meanings.every((m) => m.text === meanings[0].text);
    cmd.option(flag, same ? `${settingTypes(flag)}: ${meanings[0].text}` : meanings.map((m) => `${m.type}: ${m.text}`).join("; "));
  }
  return cmd;
}

export function serviceCommand(context: Ctx): Command {
  const service = new Command("service").description("sell a service as a provider (in the foreground, or in a running daemon)");
  const start = service
    .command("start")
    .argument("<type>", `service type: ${SERVICE_TYPES.join(" | ")}`)
    .description("start a service and announce it to discovery: in the running daemon if there is one, else here until Ctrl-C");
  settingsOptions(start);
  paymentPolicyOptions(offerOptions(identityOptions(controlsOptions(start), "the provider identity"))).action(async (type: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const body = serviceBody(type, opts);
    const policy = parsePaymentPolicy(opts, ctx.config.paymentPolicy);
    const controls = controlsFromFlags(opts, (f) => cmd.getOptionValueSource(f) === "cli");
    if (controls) body.controls = controls;
    const running = ctx.runningNode();
    if (running) {
      const policyFlags = POLICY_FLAGS.filter((f) => cmd.getOptionValueSource(f) === "cli");
      if (policyFlags.length) ctx.out.note("payment policy flags apply to the whole daemon: give them to `myst daemon`; ignored here");
      const view = await running.startService(body);
      return ctx.out.result(view, () => [
        `${view.type} service started in the node (pid ${running.endpoint.pid}); \`myst service stop ${view.type}\` stops it`,
      ]);
    }
    // No node runs for this data dir: this command runs one in the foreground until Ctrl-C and
    // drives it through the same API (on a 0600 unix socket). It sells only this service.
    const node = await ctx.runNode(opts, { policy, foreground: true });
    let view: Awaited<ReturnType<typeof node.client.startService>>;
    try {
      view = await node.client.startService(body);
    } catch (err) {
      await node.stop();
      throw err;
    }
    const { registration } = await node.client.identity(node.identity);
    if (registration.state !== "registered") {
      ctx.out.note(`identity ${node.identity} is not registered yet: the proposal is announced once it is (myst identities register)`);
    }
    ctx.out.result({ provider: node.identity, serviceType: view.type }, () => [
      `${view.type} service of ${node.identity} running; announcing to discovery over ${ctx.config.brokerUrls.join(", ")}`,
      "Ctrl-C stops it",
    ]);
    await untilSignal(node.stop);
  });

  service
    .command("stop")
    .argument("<type>", "the service type")
    .description("stop a service the daemon runs: its sessions end, its proposal is withdrawn")
    .action(async (type: string, _opts, cmd: Command) => {
      const ctx = context(cmd);
      const stopped = await ctx.withNode({}, (node) => node.stopService(type));
      ctx.out.result(stopped, () => [`${type} service stopped`]);
    });

  service
    .command("list")
    .description("list the services the daemon runs, with their proposal's state in discovery")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const { services } = await ctx.withNode({}, (node) => node.services());
      ctx.out.result(services, () =>
        services.length === 0
          ? ["no services running"]
          : services.map(
              (s) =>
                `${s.type}  ${s.offer.country}/${s.offer.ipType}  ${weiToMyst(s.offer.pricePerHourWei)} MYST/h + ${weiToMyst(s.offer.pricePerGiBWei)} MYST/GiB  ${s.announcement.state}${s.announcement.lastError ? ` (${s.announcement.lastError})` : ""}  ${s.sessions} session(s)`,
            ),
      );
    });
  return service;
}
