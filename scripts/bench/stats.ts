import os from "node:os";
import fs from "node:fs";
import path from "node:path";

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function summarize(samplesMs: number[]): { n: number; p50: number; p99: number; mean: number } {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { n: sorted.length, p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), mean: round(mean) };
}

export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Writes bench/<name>.json and bench/<name>.md (a table) and prints the table. */
export function writeResults(name: string, data: Record<string, unknown>, table: string[][]): void {
  const dir = path.resolve(__dirname, "..", "..", "bench");
  fs.mkdirSync(dir, { recursive: true });
  const meta = { benchmark: name, at: new Date().toISOString(), node: process.version, cpus: require("node:os").cpus().length };
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ ...meta, ...data }, null, 2) + "\n");
  const [head, ...rows] = table;
  const md = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
  fs.writeFileSync(path.join(dir, `${name}.md`), `# ${name} benchmark (${meta.at})\n\n${md}\n`);
  console.log(md);
}

/** The machine's load averages (1, 5 and 15 min), as "a / b / c". */
export function loadLine(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");
}

/** Runs a bench script's `main`: the process exits 0 once it resolves, 1 with its error printed when it rejects. */
export function runScript(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
