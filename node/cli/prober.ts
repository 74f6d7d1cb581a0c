import { Command, Option } from "commander";
import { weiToMyst } from "../values/myst";
import type { IdentityFlags } from "../api/launch";
import { MystError } from "../errors/MystError";
import { SERVICE_TYPES } from "../api/schemas";
import type { CommandContext } from "./context";
import { identityOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;

function whole(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new MystError("BAD_FLAG", `${flag} must be a whole number from ${min} to ${max}`);
  return n;
}

/**
 * `myst prober`: the prober role (docs/quality.md "Probers"). Rounds of probes through the node: providers
 * drawn at random, each connected to as a consumer (paying its normal price from this node's vault),
 * the stage checks run, a signed probe result sent to discovery. One round per `--every` minutes until
 * interrupted, or `--once`.
 */
export function proberCommand(context: Ctx): Command {
  return identityOptions(new Command("prober"))
    .description("probe providers drawn at random as a consumer (paying their normal price) and publish signed probe results to discovery")
    .addOption(
      new Option("--service-type <type...>", "service types to probe (tunnel types only from a network namespace of its own: docs/quality.md)")
        .choices([...SERVICE_TYPES])
        .makeOptionMandatory(),
    )
    .addOption(new Option("--sample <n>", "providers per service type per round").default("5"))
    .addOption(new Option("--hold <seconds>", "how long a working session is held at most, until its first invoice is paid").default("10"))
    .addOption(new Option("--every <minutes>", "minutes between rounds (the score's period is 6 h)").default("360"))
    .addOption(new Option("--once", "one round, then exit"))
    .action(async (opts: { serviceType: string[]; sample: string; hold: string; every: string; once?: boolean } & IdentityFlags, cmd: Command) => {
      const ctx = context(cmd);
      const body = { serviceTypes: opts.serviceType, sample: whole(opts.sample, "--sample", 1, 100), holdSeconds: whole(opts.hold, "--hold", 1, 300) };
      const everyMs = whole(opts.every, "--every", 1, 10_080) * 60_000;
      let stop = false;
      let wake: () => void = () => undefined;
      const onSignal = () => {
        stop = true;
        wake();
      };
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      // The running node (a daemon) probes; without one, this command runs the node in the foreground.
      const running = ctx.runningNode();
      const foreground = running ? undefined : await ctx.runNode(opts, { foreground: true });
      const node = running ?? foreground!.client;
      try {
        await (async () => {
          do {
            const r = await node.probeRound(body);
            ctx.out.result(r, () => [
              `round ${r.startedAt} – ${r.endedAt}: ${r.probes.length} probe(s)`,
              ...r.probes.map(
                (p) =>
                  `  ${p.provider} ${p.serviceType}: ${p.failed ? `failed at ${p.failed}` : "every stage passed"}` +
                  (BigInt(p.promisedWei) > 0n ? `, paid ${weiToMyst(p.promisedWei)} MYST` : "") +
                  (p.error ? ` (${p.error})` : ""),
              ),
            ]);
            if (opts.once || stop) return;
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, everyMs);
              wake = () => {
                clearTimeout(t);
                resolve();
              };
            });
          } while (!stop);
        })();
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await foreground?.stop();
      }
    });
}
