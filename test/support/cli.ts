/** The `myst` CLI as tests drive it: scripts/lib/myst-cli.ts (shared with the relay benchmark, which may not import test/). */
export * from "../../scripts/lib/myst-cli";
