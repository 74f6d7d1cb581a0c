import path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { stopChild } from "./local-chain";

/**
 * The demo's processes (scripts/demo.ts): the myst commands it runs, the ones it leaves running
 * (shown when the demo fails), and what it started, stopped in reverse at the end.
 */

const ROOT = path.resolve(__dirname, "..", "..");
/** The built CLI the demo runs (dist/, made by npm run build). */
export const MYST = path.join(ROOT, "dist", "node", "cli", "main.js");
export const started: { name: string; stop: () => Promise<unknown> }[] = [];
/** The demo's own myst processes (discovery, providers, the consumer's node): their output is shown when the demo fails. */
const components: { name: string; child: ChildProcess; output: () => string }[] = [];
/** How many of a component's last lines a failed demo prints. */
const TAIL_LINES = 30;
/** `myst args…`, on the machine namespace `netns` stands for when given (the consumer's: `ip netns exec` execs, so the PID is myst's). */
const mystArgv = (args: string[], netns?: string) =>
  netns ? ["/usr/sbin/ip", "netns", "exec", netns, process.execPath, MYST, ...args] : [process.execPath, MYST, ...args];

export function myst(env: NodeJS.ProcessEnv, args: string[], netns?: string): { code: number | null; stdout: string; stderr: string } {
  const [bin, ...argv] = mystArgv(args, netns);
  const r = spawnSync(bin, argv, { env: { ...process.env, ...env }, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function mystOk(env: NodeJS.ProcessEnv, args: string[], netns?: string): string {
  const r = myst(env, args, netns);
  if (r.code !== 0) throw new Error(`myst ${args.join(" ")} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export function background(name: string, env: NodeJS.ProcessEnv, args: string[], netns?: string): { child: ChildProcess; output: () => string } {
  const [bin, ...argv] = mystArgv(args, netns);
  const child = spawn(bin, argv, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  started.push({ name, stop: () => stopChild(child, 10_000) });
  components.push({ name, child, output: () => output });
  return { child, output: () => output };
}

/** Fails the demo at once when one of its myst processes exited: waiting for what it would have done is pointless. */
export function stillRunning() {
  const gone = components.find((c) => c.child.exitCode !== null || c.child.signalCode !== null);
  if (gone) throw new Error(`${gone.name} exited (${gone.child.exitCode ?? gone.child.signalCode})`);
}

/**
 * What a failed demo shows besides its own message: the last lines of each component that exited,
 * or of every component when none did (then which one is at fault is not known).
 */
export function failureOutput(): string {
  const exited = components.filter((c) => c.child.exitCode !== null || c.child.signalCode !== null);
  return (exited.length ? exited : components)
    .map((c) => {
      const state = c.child.exitCode !== null || c.child.signalCode !== null ? `exited ${c.child.exitCode ?? c.child.signalCode}` : "still running";
      const lines = c.output().trimEnd().split("\n");
      const tail = lines.slice(-TAIL_LINES).join("\n").trim() || "(no output)";
      return `\n--- ${c.name} (${state}), its last ${Math.min(lines.length, TAIL_LINES)} line(s) ---\n${tail}`;
    })
    .join("\n");
}
