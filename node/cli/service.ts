import { Command, Option } from "commander";
import { ProviderNode, type Offer } from "../daemon/provider-node";
import { MystError } from "../errors/MystError";
import { IP_TYPES, type IpType } from "../proposal/proposal";
import path from "node:path";
import { SERVICE_TYPES, checkServiceSpec, startProviderService, type ServiceSpec } from "../services/catalog";
import type { CommandContext } from "./context";
import { mystToWei } from "../payments/price";
import { untilSignal } from "./long-running";

type Ctx = (cmd: Command) => CommandContext;

/** The options every provider command takes to describe its offer. */
export function offerOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--identity <address>", "the provider identity (default: the only one in the keystore)"))
    .addOption(new Option("--passphrase-file <file>", "keystore passphrase file (or MYST_PASSPHRASE)"))
    .addOption(new Option("--passphrase <passphrase>", "keystore passphrase"))
    .option("--country <code>", "where the service's traffic exits (ISO 3166-1 alpha-2)", "ZZ")
    .option("--city <name>", "city")
    .option("--asn <n>", "autonomous system number")
    .option("--isp <name>", "ISP name")
    .option("--ip-type <type>", `one of ${IP_TYPES.join(", ")}`, "unknown")
    .option("--price-per-hour <myst>", "price per hour of session, in MYST", "0.01")
    .option("--price-per-gib <myst>", "price per GiB moved, in MYST", "0.05")
    .option("--bandwidth <mbps>", "committed bandwidth, Mbit/s", "100")
    .option("--max-sessions <n>", "sessions at once", "50")
    .option("--invoice-every <seconds>", "how often to invoice each session", "10")
    .option("--invoice-above <myst>", "also invoice as soon as this much more is due", "0.01")
    .option("--max-unpaid <myst>", "end a session when this much is unpaid", "0.05")
    .option("--min-channel-balance <myst>", "refuse consumers whose channel holds less", "0.1")
    .option("--settle-threshold <myst>", "settle a channel when this much is unsettled", "1")
    .option("--no-settle-on-session-end", "do not settle when a session ends (only by threshold and at start/stop)");
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
    pricePerHour: BigInt(mystToWei(opts.pricePerHour ?? "0", "--price-per-hour")),
    pricePerGiB: BigInt(mystToWei(opts.pricePerGib ?? "0", "--price-per-gib")),
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
      allowPrivateRanges: typeof ranges === "string" ? [ranges] : (ranges as string[] | undefined),
    },
  });
}

export function serviceCommand(context: Ctx): Command {
  const service = new Command("service").description("sell a service as a provider");
  offerOptions(
    service
      .command("start")
      .argument("<type>", `service type: ${SERVICE_TYPES.join(" | ")}`)
      .description("start a service, announce it to discovery and serve sessions until Ctrl-C")
      .option("--public-ip <address>", "openvpn: the address consumers connect to")
      .option("--port <port>", "openvpn: UDP port", "1194")
      .option("--bind <address>", "openvpn: listen on this address only")
      .option("--uplink <interface>", "openvpn: internet-facing interface for NAT (default: the default route's)")
      .option("--allow-private", "openvpn: let consumers reach private networks and this host (default: blocked)")
      .option("--allow-private-range <cidr...>", "openvpn: private ranges consumers may reach")
      .option("--netns <name>", "openvpn: run the server and its firewall in this network namespace (tests, demo)"),
  ).action(async (type: string, opts, cmd: Command) => {
    const ctx = context(cmd);
    const spec = serviceSpecFromFlags(type, opts);
    const offer = parseOffer(opts);
    const maxSessions = Number(opts.maxSessions);
    if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new MystError("BAD_FLAG", "--max-sessions must be a positive whole number");
    const key = await ctx.identity(opts);
    const registry = await ctx.registry({ follow: true });
    if (!(await registry.isRegistered(key.address))) {
      ctx.out.note(`identity ${key.address} is not registered yet: the proposal is announced once it is (myst identities register)`);
    }
    const invoiceEvery = Number(opts.invoiceEvery);
    if (!(invoiceEvery > 0)) throw new MystError("BAD_FLAG", `--invoice-every "${opts.invoiceEvery}" is not a positive number of seconds`);
    const payments = {
      conn: await ctx.chain(),
      dbFile: path.join(ctx.config.dataDir, "myst.db"),
      invoiceEveryMs: invoiceEvery * 1000,
      invoiceAboveWei: BigInt(mystToWei(opts.invoiceAbove, "--invoice-above")),
      maxUnpaid: BigInt(mystToWei(opts.maxUnpaid, "--max-unpaid")),
      minChannelBalance: BigInt(mystToWei(opts.minChannelBalance, "--min-channel-balance")),
      settleThreshold: BigInt(mystToWei(opts.settleThreshold, "--settle-threshold")),
      settleOnSessionEnd: opts.settleOnSessionEnd !== false,
    };
    const service = await startProviderService(spec, { dataDir: ctx.config.dataDir, directory: registry, log: ctx.log });
    const provider = new ProviderNode({ key, brokerUrls: ctx.config.brokerUrls, registry, services: [{ service, offer }], log: ctx.log, maxSessions, payments });
    try {
      await provider.start();
    } catch (err) {
      await service.stop?.().catch(() => undefined);
      throw err;
    }
    ctx.out.result({ provider: key.address, serviceType: type, subject: provider.dialogs.subject }, () => [
      `${type} service of ${key.address} running; announcing to discovery over ${ctx.config.brokerUrls.join(", ")}`,
      "Ctrl-C stops it",
    ]);
    await untilSignal(async () => {
      await provider.stop();
      await service.stop?.();
    });
  });
  return service;
}
