// The tunnel benchmark's consumer daemon in its own namespace, for the stage checks: a node process started once in
// the consumer's namespace that runs the in-process checks (services/tunnel-check.ts) on each spec it reads (one JSON
// line on stdin), and answers each with one line: how long the check took in it, and what it found.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { checkThroughTunnel, type TunnelCheckSpec } from "../../node/services/tunnel-check";
import type { TunnelCheck } from "../../node/session/service";

/** A resident checker in namespace `netns`: `check(spec)` runs the checks there, in-process. */
export async function residentChecker(netns: string): Promise<{ check(spec: TunnelCheckSpec): Promise<{ ms: number; check: TunnelCheck }>; stop(): void }> {
  const child: ChildProcess = spawn("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, "-r", "ts-node/register/transpile-only", __filename], {
    cwd: path.join(__dirname, "..", ".."),
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on("line", (line) => waiting.shift()?.(line));
  const next = () => new Promise<string>((resolve) => waiting.push(resolve));
  if ((await next()) !== "ready") throw new Error("the resident checker did not start");
  return {
    async check(spec) {
      const answer = next();
      child.stdin!.write(`${JSON.stringify(spec)}\n`);
      return JSON.parse(await answer);
    },
    stop: () => child.kill(),
  };
}

if (require.main === module) {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    const t0 = performance.now();
    const check = await checkThroughTunnel(JSON.parse(line) as TunnelCheckSpec);
    process.stdout.write(`${JSON.stringify({ ms: Math.round((performance.now() - t0) * 10) / 10, check })}\n`);
  });
  lines.on("close", () => process.exit(0));
  process.stdout.write("ready\n");
}
