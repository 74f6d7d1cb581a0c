// The kill switch's own share of the connect path, without a tunnel: prepare → (a 6 ms negotiation)
// → engage → tunnelUp, timed from engage, 12 times in a namespace of its own (myst-floorab<label>).
// Run as root, against any checkout (A/B in the same minute, docs/connect-path.md):
//   npx ts-node --transpile-only scripts/bench/kill-switch-path.ts <repo root> <label>
// (TS_NODE_PROJECT=<repo root>/tsconfig.json for another checkout).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
const root = process.argv[2];
const label = process.argv[3];

const ns = `myst-floorab${label}`;
const dir = fs.mkdtempSync(`/tmp/floor/ksab/${label}-`);
const sh = (...a: string[]) => execFileSync("ip", a);
sh("netns", "add", ns);
sh("-n", ns, "link", "set", "lo", "up");
sh("-n", ns, "link", "add", "dum0", "type", "veth", "peer", "name", "dum1");
sh("-n", ns, "link", "set", "dum1", "up");
sh("-n", ns, "addr", "add", "198.18.1.2/24", "dev", "dum0");
sh("-n", ns, "link", "set", "dum0", "up");
sh("-n", ns, "route", "add", "default", "via", "198.18.1.1");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const plan = { device: "mwc0123456789ab", endpoints: [{ address: "198.18.3.2", protocol: "udp" as const, port: 51820 }], dns: ["10.8.0.1"], ipv6: false };
async function main() {
  const { ConsumerProtection } = await import(`${root}/node/consumer-protection/protection`);
  const path: number[] = [];
  try {
    for (let i = 0; i < 13; i++) {
      const p = new ConsumerProtection({ killSwitch: true, allowLan: false, netns: ns, dataDir: dir });
      p.prepare();
      await sleep(6);
      const t0 = performance.now();
      await p.engage(plan);
      await p.tunnelUp({ device: plan.device, dns: plan.dns, ipv6: false });
      if (i > 0) path.push(performance.now() - t0);
      await p.lift();
      await sleep(50);
    }
  } finally {
    try {
      (await import(`${root}/node/consumer-protection/nft-session`)).endNftSessions();
    } catch {
      // A checkout without the warm nft (before issue 31's kill switch change).
    }
    sh("netns", "del", ns);
  }
  path.sort((a, b) => a - b);
  console.log(label, "engage+tunnelUp after a 6 ms negotiation: p50", path[6].toFixed(1), "ms, p90", path[10].toFixed(1), "ms (12 runs)");
  process.exit(0);
}
if (require.main === module) void main();
