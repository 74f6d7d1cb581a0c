import { Command } from "commander";
import { MystError } from "../errors/MystError";
import type { CommandContext } from "./context";

type Ctx = (cmd: Command) => CommandContext;

/** `myst ui`: a one-time login link to the running daemon's dashboard. */
export function uiCommand(context: Ctx): Command {
  return new Command("ui")
    .description("print a one-time login link to the dashboard of the running daemon (valid 10 minutes, used once)")
    .action(async (_opts, command: Command) => {
      const ctx = context(command);
      const node = ctx.requireNode("myst ui");
      if (node.endpoint.url.startsWith("unix:"))
        throw new MystError("DASHBOARD_UNAVAILABLE", "a foreground node serves its API on a unix socket only: the dashboard needs `myst daemon`");
      const link = await node.loginLink();
      ctx.out.result(link, () => [`open ${link.url}`, `(one-time link, valid until ${link.expiresAt}; keeps you logged in until the daemon restarts)`]);
    });
}
