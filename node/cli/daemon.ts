import { Command, Option } from "commander";
import { apiTokenFile } from "../api/token";
import { defaultConfig } from "../config/config";
import { parsePaymentPolicy } from "../config/payment-policy";
import type { CommandContext } from "./context";
import { untilSignal } from "./long-running";
import { identityOptions, paymentPolicyOptions } from "./service";

type Ctx = (cmd: Command) => CommandContext;

/** `myst daemon`: the node as a long-running service, driven over its local REST API. */
export function daemonCommand(context: Ctx): Command {
  const cmd = new Command("daemon")
    .description("run the node as a long-lived service (provider and consumer) with its REST API on 127.0.0.1; the CLI's commands then go through it")
    .addOption(new Option("--api-host <address>", `address of the REST API (default ${defaultConfig().apiHost}, or MYST_API_HOST)`))
    .addOption(new Option("--api-port <port>", `port of the REST API, 0 for any free one (default ${defaultConfig().apiPort}, or MYST_API_PORT)`));
  paymentPolicyOptions(identityOptions(cmd, "the node's identity")).action(async (opts, command: Command) => {
    const ctx = context(command);
    const { dataDir } = ctx.config;
    const { identity, url, loginLink, stop } = await ctx.runNode(opts, { policy: parsePaymentPolicy(opts, ctx.config.paymentPolicy), foreground: false });
    if (!/^127\.|^::1$/.test(ctx.config.apiHost)) {
      ctx.log.warn({ apiHost: ctx.config.apiHost }, "the API listens beyond this machine: the token is all that protects the node's keys and money");
    }
    ctx.out.result({ identity, url, tokenFile: apiTokenFile(dataDir), openapi: `${url}/openapi.json`, loginLink: loginLink() }, () => [
      `daemon of ${identity} running`,
      `REST API: ${url} (token in ${apiTokenFile(dataDir)}; OpenAPI at ${url}/openapi.json)`,
      `dashboard: ${loginLink()} (one-time login link, valid 10 minutes; \`myst ui\` prints another)`,
      "Ctrl-C or SIGTERM stops it",
    ]);
    await untilSignal(stop);
  });
  return cmd;
}
