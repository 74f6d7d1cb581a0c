import { Command, Option } from "commander";
import { formatUnits } from "ethers";
import type { ServiceView } from "../daemon/daemon";
import type { Offer, ProviderPaymentSettings } from "../daemon/provider-node";
import { MystError } from "../errors/MystError";
import { IP_TYPES, type IpType } from "../proposal/proposal";
import { SERVICE_TYPES, checkServiceSpec, type ServiceSpec } from "../services/catalog";
import type { CommandContext } from "./context";
import { DEFAULT_PRICE, mystToWei } from "../payments/price";
import { untilSignal } from "./long-running";
import { runNode } from "./run-node";
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
    .option("--country <code>", "where the service's traffic exits (ISO 3166-1 alpha-2)", "ZZ")
    .option("--city <name>", "city")
    .option("--asn <n>", "autonomous system number")
    .option("--isp <name>", "ISP name")
    .option("--ip-type <type>", `one of ${IP_TYPES.join(", ")}`, "unknown")
    .option("--price-per-hour <myst>", "price per hour of session, in MYST", DEFAULT_PRICE.perHour)
    .option("--price-per-gib <myst>", "price per GiB moved, in MYST", DEFAULT_PRICE.perGiB)
    .option("--bandwidth <mbps>", "each session's bandwidth, Mbit/s each way: advertised and enforced on tunnels (0: no limit)", "100");
}

const POLICY_FLAGS = ["maxSessions", "invoiceEvery", "invoiceAbove", "maxUnpaid", "minChannelBalance", "settleThreshold", "settleOnSessionEnd"];

/** How a provider is paid, for all its services: invoicing, limits, settlement. */
export function paymentPolicyOptions(cmd: Command): Command {
  return cmd
    .option("--max-sessions <n>", "sessions at once", "50")
    .option("--invoice-every <seconds>", "how often to invoice each session", "10")
    .option("--invoice-above <myst>", "also invoice as soon as this much more is due", "0.01")
    .option("--max-unpaid <myst>", "end a session when this much is unpaid", "0.05")
    .option("--min-channel-balance <myst>", "refuse consumers whose channel holds less", "0.1")
    .option("--settle-threshold <myst>", "settle a channel when this much is unsettled", "1")
    .option("--no-settle-on-session-end", "do not settle when a session ends (only by threshold and at start/stop)");
}

/** The payment policy of the flags' defaults (a foreground `connect` node sells nothing, but is one node). */
export const DEFAULT_POLICY: ProviderPaymentSettings & { maxSessions: number } = {
  maxSessions: 50,
  invoiceEveryMs: 10_000,
  invoiceAboveWei: 10n ** 16n,
  maxUnpaid: 5n * 10n ** 16n,
  minChannelBalance: 10n ** 17n,
  settleThreshold: 10n ** 18n,
  settleOnSessionEnd: true,
};

export function parsePaymentPolicy(opts: Record<string, unknown>): ProviderPaymentSettings & { maxSessions: number } {
  const maxSessions = Number(opts.maxSessions);
  if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new MystError("BAD_FLAG", "--max-sessions must be a positive whole number");
  const invoiceEvery = Number(opts.invoiceEvery);
  if (!(invoiceEvery > 0)) throw new MystError("BAD_FLAG", `--invoice-every "${opts.invoiceEvery}" is not a positive number of seconds`);
  return {
    maxSessions,
    invoiceEveryMs: invoiceEvery * 1000,
    invoiceAboveWei: BigInt(mystToWei(String(opts.invoiceAbove), "--invoice-above")),
    maxUnpaid: BigInt(mystToWei(String(opts.maxUnpaid), "--max-unpaid")),
    minChannelBalance: BigInt(mystToWei(String(opts.minChannelBalance), "--min-channel-balance")),
    settleThreshold: BigInt(mystToWei(String(opts.settleThreshold), "--settle-threshold")),
    settleOnSessionEnd: opts.settleOnSessionEnd !== false,
  };
}

export function parseOffer(opts: Record<string, string | undefined>): Offer {
  const country = (opts.country ?? "ZZ").toUpperCase();
  if (!/^[A-Z]{2}$/.test(country)) throw new MystError("BAD_FLAG", `--country "${opts.country}" is not a two-letter code`);
  if (!IP_TYPES.includes(opts.ipType as IpType)) throw new MystError("BAD_FLAG", `--ip-type must be one of ${IP_TYPES.join(", ")}`);
  const bandwidth = Number(opts.bandwidth);
  if (!(bandwidth >= 0)) throw new MystError("BAD_FLAG", `--bandwidth "${opts.bandwidth}" is not a number of Mbit/s`);
  const asn = opts.asn === undefined ? undefined : Number(opts.asn);
  if (asn !== undefined && !Number.isInteger(asn)) throw new MystError("BAD_FLAG", `--asn "${opts.asn}" is not a number`);
  return {
    country,
    city: opts.city,
    asn,
    isp: opts.isp,
    ipType: opts.ipType as IpType,
    pricePerHour: mystToWei(opts.pricePerHour ?? "0", "--price-per-hour"),
    pricePerGiB: mystToWei(opts.pricePerGib ?? "0", "--price-per-gib"),
    bandwidthMbps: bandwidth,
  };
}

/** The service spec from `service start` flags. */
export function serviceSpecFromFlags(type: string, opts: Record<string, unknown>): ServiceSpec {
  const ranges = opts.allowPrivateRange;
  const port = Number(opts.port ?? 1194);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new MystError("BAD_FLAG", `--port "${opts.port}" is not a port number`);
  if (type === "openvpn" && !opts.publicIp) throw new MystError("BAD_FLAG", "--public-ip is needed: the address consumers reach this provider at");
  return checkServiceSpec({
    type,
    openvpn: {
      publicIp: opts.publicIp as string,
      port,
      bind: opts.bind as string | undefined,
      uplink: opts.uplink as string | undefined,
      netns: opts.netns as string | undefined,
      allowPrivate: Boolean(opts.allowPrivate),
      ...(opts.ipv6 ? { ipv6: true } : {}),
      allowPrivateRanges: typeof ranges === "string" ? [ranges] : (ranges as string[] | undefined),
    },
  });
}

export function serviceCommand(context: Ctx): Command {
  const service = new Command("service").description("sell a service as a provider (in the foreground, or in a running daemon)");
  const start = service
    .command("start")
    .argument("<type>", `service type: ${SERVICE_TYPES.join(" | ")}`)
    .description("start a service and announce it to discovery: in the running daemon if there is one, else here until Ctrl-C")
    .option("--public-ip <address>", "openvpn: the address consumers connect to")
    .option("--port <port>", "openvpn: UDP port", "1194")
    .option("--bind <address>", "openvpn: listen on this address only")
    .option("--uplink <interface>", "openvpn: internet-facing interface for NAT (default: the default route's)")
    .option("--allow-private", "openvpn: let consumers reach private networks and this host (default: blocked)")
    .option("--allow-private-range <cidr...>", "openvpn: private ranges consumers may reach")
    .option("--netns <name>", "openvpn: run the server and its firewall in this network namespace (tests, demo)")
    .option("--ipv6", "openvpn: carry consumers' IPv6 (NAT66 out of the uplink; needs IPv6 egress here); the proposal says so");
  paymentPolicyOptions(offerOptions(identityOptions(controlsOptions(start), "the provider identity"))).action(async (type: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const spec = serviceSpecFromFlags(type, opts);
    const offer = parseOffer(opts);
    const policy = parsePaymentPolicy(opts);
    const controls = controlsFromFlags(opts, (f) => cmd.getOptionValueSource(f) === "cli");
    const body = {
      type: spec.type,
      ...(spec.type === "openvpn" ? { openvpn: spec.openvpn } : {}),
      ...(controls ? { controls } : {}),
      offer: {
        country: offer.country,
        city: offer.city,
        asn: offer.asn,
        isp: offer.isp,
        ipType: offer.ipType,
        pricePerHour: opts.pricePerHour,
        pricePerGiB: opts.pricePerGib,
        bandwidthMbps: offer.bandwidthMbps,
      },
    };
    const daemon = ctx.daemon();
    if (daemon) {
      const policyFlags = POLICY_FLAGS.filter((f) => cmd.getOptionValueSource(f) === "cli");
      if (policyFlags.length) ctx.out.note("payment policy flags apply to the whole daemon: give them to `myst daemon`; ignored here");
      const view = await daemon.post<ServiceView>("/v1/services", body);
      return ctx.out.result(view, () => [`${view.type} service started in the node (pid ${daemon.endpoint.pid}); \`myst service stop ${view.type}\` stops it`]);
    }
    // No node runs for this data dir: this command runs one in the foreground until Ctrl-C and
    // drives it through the same API (on a 0600 unix socket). It sells only this service.
    const running = await runNode(ctx, opts, { policy, foreground: true });
    let view: ServiceView;
    try {
      view = await running.client.post<ServiceView>("/v1/services", body);
    } catch (err) {
      await running.stop();
      throw err;
    }
    const identity = running.node.identity;
    if (!(await (await ctx.registry()).isRegistered(identity))) {
      ctx.out.note(`identity ${identity} is not registered yet: the proposal is announced once it is (myst identities register)`);
    }
    ctx.out.result({ provider: identity, serviceType: view.type, subject: running.node.provider.dialogs.subject }, () => [
      `${view.type} service of ${identity} running; announcing to discovery over ${ctx.config.brokerUrls.join(", ")}`,
      "Ctrl-C stops it",
    ]);
    await untilSignal(running.stop);
  });

  service
    .command("stop")
    .argument("<type>", "the service type")
    .description("stop a service the daemon runs: its sessions end, its proposal is withdrawn")
    .action(async (type: string, _opts, cmd: Command) => {
      const ctx = context(cmd);
      const stopped = await ctx.requireDaemon("`myst service stop`").delete(`/v1/services/${encodeURIComponent(type)}`);
      ctx.out.result(stopped, () => [`${type} service stopped`]);
    });

  service
    .command("list")
    .description("list the services the daemon runs, with their proposal's state in discovery")
    .action(async (_opts, cmd: Command) => {
      const ctx = context(cmd);
      const { services } = await ctx.requireDaemon("`myst service list`").get<{ services: ServiceView[] }>("/v1/services");
      ctx.out.result(services, () =>
        services.length === 0
          ? ["no services running"]
          : services.map(
              (s) =>
                `${s.type}  ${s.offer.country}/${s.offer.ipType}  ${formatUnits(s.offer.pricePerHourWei, 18)} MYST/h + ${formatUnits(s.offer.pricePerGiBWei, 18)} MYST/GiB  ${s.announcement.state}${s.announcement.lastError ? ` (${s.announcement.lastError})` : ""}  ${s.sessions} session(s)`,
            ),
      );
    });
  return service;
}
