import { Command, Option } from "commander";
import { Broker } from "../broker/broker";
import { DiscoveryClient } from "../discovery/client";
import { DiscoveryService } from "../discovery/server";
import { formatUnits } from "ethers";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../payments/price";
import { parseFilter } from "../proposal/filter";
import type { CommandContext } from "./context";
import { untilSignal } from "./long-running";

type Ctx = (cmd: Command) => CommandContext;

export function discoveryCommand(context: Ctx): Command {
  return new Command("discovery")
    .description("run a discovery service (HTTP API fed by NATS announcements) until Ctrl-C")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "4050")
    .option("--ttl <seconds>", "a proposal not pinged for this long disappears", "90")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const port = Number(opts.port);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new MystError("BAD_FLAG", `--port "${opts.port}" is not a port number`);
      if (!(ttl > 0)) throw new MystError("BAD_FLAG", `--ttl "${opts.ttl}" is not a positive number of seconds`);
      const broker = new Broker({ servers: ctx.config.brokerUrls, name: "myst-discovery" });
      await broker.start();
      const service = new DiscoveryService({ broker, directory: await ctx.registry({ follow: true }), host: opts.host, port, ttlMs: ttl * 1000, maxServiceTypesPerProvider: ctx.config.maxServiceTypesPerProvider, log: ctx.log });
      await service.start();
      ctx.out.result({ url: service.url }, () => [`discovery listening on ${service.url}`]);
      await untilSignal(async () => {
        await service.stop();
        await broker.stop();
      });
    });
}

export function proposalsCommand(context: Ctx): Command {
  return new Command("proposals")
    .description("search the discovery service for proposals (each one re-verified)")
    .addOption(new Option("--service-type <type>", "e.g. openvpn"))
    .addOption(new Option("--country <code>", "two-letter country code"))
    .addOption(new Option("--ip-type <type>", "residential | hosting | mobile | business | education | unknown"))
    .addOption(new Option("--metering <unit>", "hour | gib: only proposals that charge by that unit"))
    .addOption(new Option("--max-price-per-hour <myst>", "in MYST, e.g. 0.05"))
    .addOption(new Option("--max-price-per-gib <myst>", "in MYST"))
    .addOption(new Option("--min-bandwidth <mbps>", "Mbit/s"))
    .addOption(new Option("--provider-id <address...>", "only these providers (repeatable)"))
    .addOption(new Option("--ipv6", "only providers whose tunnel carries IPv6"))
    .option("--limit <n>", "at most this many", "100")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const filter = parseFilter({
        service_type: opts.serviceType,
        country: opts.country,
        ip_type: opts.ipType,
        metering: opts.metering,
        max_price_per_hour: opts.maxPricePerHour === undefined ? undefined : mystToWei(opts.maxPricePerHour, "--max-price-per-hour"),
        max_price_per_gib: opts.maxPricePerGib === undefined ? undefined : mystToWei(opts.maxPricePerGib, "--max-price-per-gib"),
        min_bandwidth: opts.minBandwidth,
        provider_id: opts.providerId,
        ipv6: opts.ipv6 ? "true" : undefined,
      });
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new MystError("BAD_FLAG", `--limit must be 1 to 500`);
      const registry = await ctx.registry();
      const client = new DiscoveryClient(ctx.config.discoveryUrl, (id) => registry.publicKeyOf(id));
      const { proposals, rejected } = await client.search(filter, { limit });
      ctx.out.result(
        proposals.map((p) => ({ ...p.proposal, signed: p.signed })),
        () =>
          proposals.length === 0
            ? ["no proposals match"]
            : proposals.map(({ proposal: p }) =>
                [
                  p.provider,
                  p.serviceType.padEnd(8),
                  p.location.country,
                  p.location.ipType.padEnd(11),
                  `${formatUnits(p.price.perHour, 18)} MYST/h`.padEnd(18),
                  `${formatUnits(p.price.perGiB, 18)} MYST/GiB`.padEnd(20),
                  `${p.bandwidthMbps} Mbit/s`,
                ].join("  "),
              ),
      );
      if (rejected) ctx.out.note(`${rejected} proposal(s) from discovery failed verification and were left out`);
    });
}

