import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";

const ROOT = path.resolve(__dirname, "..", "..");
/** Debian's chromium (scripts/install.sh); Playwright downloads no browser here. */
export const CHROMIUM = "/usr/bin/chromium";

/** Builds the dashboard into dist/ui as `npm run build` does (vite; about 3 s), so the daemon serves the current page. */
export function buildDashboard(): void {
  execFileSync(process.execPath, [path.join(ROOT, "node_modules", "vite", "bin", "vite.js"), "build", "--config", "ui/vite.config.mts"], {
    cwd: ROOT,
    stdio: "inherit",
  });
}

/** Skips (or in CI fails) when chromium is missing, like requireE2E. */
export function requireChromium(ctx: Mocha.Context): void {
  if (fs.existsSync(CHROMIUM)) return;
  const reason = `${CHROMIUM} is missing (apt-get install chromium; scripts/install.sh)`;
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: failing, not skipping)`);
  console.log(`      (skipped: ${reason})`);
  ctx.skip();
}

/** Headless chromium; the caller closes it (in `after`, also when a test fails). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
}
