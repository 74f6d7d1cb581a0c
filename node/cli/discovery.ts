import path from "node:path";
import { Command, Option } from "commander";
import { weiToMyst } from "../values/myst";
import { IP_TYPES, SERVICE_TYPES } from "../api/schemas";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../values/myst";
import type { CommandContext } from "./context";
import { untilSignal } from "./long-running";

type Ctx = (cmd: Command) => CommandContext;

export function discoveryCommand(context: Ctx): Command {
  return new Command("discovery")
    .description("run a discovery replica (HTTP API; the index lives in a NATS JetStream bucket shared by every replica) until Ctrl-C")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "4050")
    .option("--ttl <seconds>", "a proposal not pinged for this long disappears (TTL of a bucket this replica creates; an existing bucket keeps its own)", "90")
    .option("--bucket <name>", "JetStream key-value bucket of the index (every replica of one discovery service uses the same)", "myst-proposals")
    .option("--replicas <n>", "copies of a new bucket in the JetStream cluster (1, 3 or 5)", "1")
    .option("--threads <n>", "signature-checking threads (default: one per core)")
    .option(
      "--replica-key-file <file>",
      "the replicas' key: marks what this replica verified, so a restart (or a replica given the same file) loads without checking every signature again; made when missing (default <data-dir>/discovery-replica.key)",
    )
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const port = Number(opts.port);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new MystError("BAD_FLAG", `--port "${opts.port}" is not a port number`);
      if (!(ttl > 0)) throw new MystError("BAD_FLAG", `--ttl "${opts.ttl}" is not a positive number of seconds`);
      const replicas = Number(opts.replicas);
      if (![1, 3, 5].includes(replicas)) throw new MystError("BAD_FLAG", `--replicas must be 1, 3 or 5`);
      const threads = opts.threads === undefined ? undefined : Number(opts.threads);
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0 && threads <= 256))
        throw new MystError("BAD_FLAG", `--threads "${opts.threads}" is not a number of threads`);
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.bucket))
        throw new MystError("BAD_FLAG", `--bucket "${opts.bucket}" is not a bucket name (letters, digits, - and _)`);
      const replicaKeyFile = opts.replicaKeyFile ?? path.join(ctx.config.dataDir, "discovery-replica.key");
      // Loaded here, not at the top: every other command (and --help) would carry the replica otherwise.
      const { startDiscoveryReplica } = require("../api/discovery-replica") as typeof import("../api/discovery-replica");
      const replica = await startDiscoveryReplica(ctx.config, ctx.log, {
        host: opts.host,
        port,
        ttlMs: ttl * 1000,
        bucket: opts.bucket,
        replicas,
        threads,
        replicaKeyFile,
      });
      ctx.out.result({ url: replica.url }, () => [`discovery listening on ${replica.url}`]);
      await untilSignal(replica.stop);
    });
}

export function proposalsCommand(context: Ctx): Command {
  return new Command("proposals")
    .description("search the discovery service for proposals (each one re-verified)")
    .addOption(new Option("--service-type <type>", SERVICE_TYPES.join(" | ")))
    .addOption(new Option("--country <code>", "two-letter country code"))
    .addOption(new Option("--ip-type <type>", "residential | hosting | mobile | business | education | unknown"))
    .addOption(new Option("--metering <unit>", "hour | gib: only proposals that charge by that unit"))
    .addOption(new Option("--max-price-per-hour <myst>", "in MYST, e.g. 0.05"))
    .addOption(new Option("--max-price-per-gib <myst>", "in MYST"))
    .addOption(new Option("--min-bandwidth <mbps>", "Mbit/s"))
    .addOption(new Option("--provider-id <address...>", "only these providers (repeatable)"))
    .addOption(new Option("--ipv6", "only providers whose tunnel carries IPv6"))
    .addOption(new Option("--access-policy <policy>", "open: only providers anyone may use | allowlist: only those restricted to an allow list"))
    .addOption(new Option("--min-quality <score>", "0–100: leave out rated providers scoring below it (unrated ones stay; docs/quality.md)"))
    .addOption(new Option("--sort <order>", "quality: best quality score first (unrated providers at the neutral 50)").choices(["quality"]))
    .option("--limit <n>", "at most this many", "100")
    .action(async (opts, cmd: Command) => {
      const ctx = context(cmd);
      const limit = Number(opts.limit);
      const minQuality = opts.minQuality === undefined ? undefined : Number(opts.minQuality);
      if (minQuality !== undefined && !(minQuality >= 0 && minQuality <= 100)) throw new MystError("BAD_FLAG", "--min-quality must be a score from 0 to 100");
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new MystError("BAD_FLAG", `--limit must be 1 to 500`);
      // The filter as typed (prices in MYST, checked here so the error names the flag); the node checks the rest.
      const myst = (value: string | undefined, flag: string) => (value === undefined ? undefined : (mystToWei(value, flag), value));
      const oneOf = <T extends string>(value: string | undefined, flag: string, allowed: readonly T[]) => {
        if (value !== undefined && !allowed.includes(value as T)) throw new MystError("BAD_FLAG", `${flag} must be one of ${allowed.join(", ")}`);
        return value as T | undefined;
      };
      const { proposals, rejected } = await ctx.withNode({}, (node) =>
        node.proposals({
          serviceType: opts.serviceType,
          country: opts.country,
          ipType: oneOf(opts.ipType, "--ip-type", IP_TYPES),
          metering: oneOf(opts.metering, "--metering", ["hour", "gib"] as const),
          maxPricePerHour: myst(opts.maxPricePerHour, "--max-price-per-hour"),
          maxPricePerGiB: myst(opts.maxPricePerGib, "--max-price-per-gib"),
          minBandwidthMbps: opts.minBandwidth,
          providerId: opts.providerId,
          ipv6: opts.ipv6 ? true : undefined,
          accessPolicy: oneOf(opts.accessPolicy, "--access-policy", ["open", "allowlist"] as const),
          minQuality,
          sort: opts.sort,
          limit,
        }),
      );
      ctx.out.result(proposals, () =>
        proposals.length === 0
          ? ["no proposals match"]
          : proposals.map((p) =>
              [
                p.provider,
                p.serviceType.padEnd(8),
                p.location.country,
                p.location.ipType.padEnd(11),
                `${weiToMyst(p.price.perHour)} MYST/h`.padEnd(18),
                `${weiToMyst(p.price.perGiB)} MYST/GiB`.padEnd(20),
                `${p.bandwidthMbps} Mbit/s`,
                ...(p.accessPolicy === "allowlist" ? ["allow list"] : []),
              ].join("  "),
            ),
      );
      if (rejected) ctx.out.note(`${rejected} proposal(s) from discovery failed verification and were left out`);
    });
}
