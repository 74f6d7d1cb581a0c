import crypto from "node:crypto";
import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { silentLogger, type Logger } from "../log/logger";
import { inNetns, program, requireNetworkCapabilities, run } from "../services/system";
import type { SessionProtection, TunnelPlan } from "../session/service";
import { ProtectionError } from "./errors";
import { nftApply } from "./nft";
import { confineHostLookups, nsswitchBeside } from "./nsswitch";
import { resolverFile } from "./resolver";
import { otherProcessAlive } from "../lifecycle/process";

/** The nftables table (family ip) that forwards the confined namespace into the tunnel, in the consumer's namespace. */
export const CONFINED_TABLE = "myst_confined";
/** The routing table (and `ip rule` priority) that sends the confined namespace's traffic into the tunnel. */
export const CONFINED_ROUTE_TABLE = 27769;

export interface ConfinementOptions {
  /** The consumer's network namespace, where the tunnel runs (the machine's own when absent). */
  netns?: string;
  /** `<data-dir>`: where the record of what was made lives, so a crash can be undone at the next start. */
  dataDir: string;
  log?: Logger;
}

/** The durable record of a confined namespace (written before it is made). */
interface ConfinementRecord {
  version: 1;
  pid: number;
  netns?: string;
  name: string;
  veth: string;
  /** The tunnel device, once up, and its IPv4 forwarding setting before. */
  tunnel?: { device: string; forwarding: string };
}

export function confinementRecordFile(dataDir: string): string {
  return path.join(dataDir, "confined.json");
}

/**
 * Confined apps (`myst run -- CMD`, or `confine: true` on PUT /v1/connection): a fresh network
 * namespace whose only way out is the tunnel, the rest of the machine untouched.
 *
 * - The tunnel runs in the consumer's namespace without taking its routes (no redirect-gateway).
 * - The confined namespace (`myst-run-<hex>`) has one veth to the consumer's namespace, a /30
 *   from 100.127.0.0/16, its only route (default via that veth) and IPv6 disabled; its resolver
 *   file (/etc/netns/<name>/resolv.conf) names only the provider's resolver, and its name-service
 *   switch sends host lookups only through that file (nsswitch.ts).
 * - In the consumer's namespace, `ip rule iif <veth> lookup 27769` sends its packets to a table
 *   whose routes are `default dev <tunnel>` and, behind it, `unreachable default`; an nftables
 *   table forwards the veth only into the tunnel (masqueraded to the tunnel's address) and drops
 *   anything else from it (to the consumer's own interfaces, to the consumer itself). Forwarding is
 *   enabled on the veth and the tunnel device only.
 * - Before the tunnel is up and after it dies there is no route: the tunnel's route goes with its
 *   device, leaving `unreachable`, and the forward rules drop whatever would take another way.
 * - `remove()` (the command exited, disconnect, stop, or the next start after a crash) deletes the
 *   namespace, its processes, rule, routes, table and resolver file.
 */
export class Confinement implements SessionProtection {
  readonly name: string;
  readonly veth: string;
  /** The consumer-side and confined-side addresses of the veth. */
  readonly addresses: { consumer: string; confined: string };
  #record?: ConfinementRecord;
  #up = false;
  readonly #log: Logger;

  constructor(readonly options: ConfinementOptions) {
    this.#log = options.log ?? silentLogger;
    resolverFile(options.netns); // fences the namespace name before anything is changed
    const id = crypto.randomBytes(3).toString("hex");
    this.name = `myst-run-${id}`;
    this.veth = `mystk${id}`;
    const [x, y] = crypto.randomBytes(2);
    const base = (y >> 2) << 2;
    this.addresses = { consumer: `100.127.${x}.${base + 1}`, confined: `100.127.${x}.${base + 2}` };
  }

  /** Whether the namespace exists (made and not yet removed). */
  get active(): boolean {
    return this.#record !== undefined;
  }

  describe(): { netns: string; address: string; tunnel: "up" | "down"; message: string } {
    return {
      netns: this.name,
      address: this.addresses.confined,
      tunnel: this.#up ? "up" : "down",
      message: this.#up
        ? `apps in network namespace ${this.name} reach the network only through the tunnel`
        : `the tunnel is down: apps in network namespace ${this.name} have no route`,
    };
  }

  /** Before the tunnel: the namespace is made with a route to nowhere but the (not yet existing) tunnel. */
  async engage(_plan: TunnelPlan): Promise<void> {
    requireNetworkCapabilities("a confined namespace", { netns: this.name, why: "to make its veth pair and routes" });
    this.#write({ version: 1, pid: process.pid, netns: this.options.netns, name: this.name, veth: this.veth });
    const c = this.options.netns;
    const ip = program("ip", "iproute2");
    const inC = (...args: string[]) => run(c ? [ip, "-n", c, ...args] : [ip, ...args]);
    const inK = (...args: string[]) => run([ip, "-n", this.name, ...args]);
    await nftApply(confinedScript({ veth: this.veth }), c);
    await run([ip, "netns", "add", this.name]);
    fs.mkdirSync(path.join("/etc/netns", this.name), { recursive: true });
    fs.writeFileSync(resolverFile(this.name), "# written by myst: no resolver until the tunnel is up\n");
    // Host lookups through that file only: nss-resolve would ask systemd-resolved outside the namespace.
    confineHostLookups(nsswitchBeside(resolverFile(this.name)));
    await inC("link", "add", this.veth, "type", "veth", "peer", "name", `${this.veth}k`);
    await inC("link", "set", `${this.veth}k`, "netns", this.name);
    await inK("link", "set", `${this.veth}k`, "name", "eth0");
    await inK("link", "set", "lo", "up");
    await inK("link", "set", "eth0", "up");
    await inK("addr", "add", `${this.addresses.confined}/30`, "dev", "eth0");
    await inK("route", "add", "default", "via", this.addresses.consumer);
    await run([ip, "netns", "exec", this.name, program("sysctl", "procps"), "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    await inC("addr", "add", `${this.addresses.consumer}/30`, "dev", this.veth);
    await inC("link", "set", this.veth, "up");
    await inC("route", "add", "unreachable", "default", "table", String(CONFINED_ROUTE_TABLE), "metric", "4096");
    await inC("rule", "add", "iif", this.veth, "lookup", String(CONFINED_ROUTE_TABLE), "priority", String(CONFINED_ROUTE_TABLE));
    await sysctl(c, `net.ipv4.conf.${this.veth}.forwarding`, "1");
    this.#log.info({ netns: this.name, consumerNetns: c }, "confined namespace made");
  }

  /** The tunnel is up: the namespace's traffic goes into it, its names to the provider's resolver. */
  async tunnelUp(tunnel: { device: string; dns: string[]; ipv6: boolean }): Promise<void> {
    if (!this.#record) throw new ProtectionError("NOT_ENGAGED", "the confined namespace was not made before the tunnel came up");
    const c = this.options.netns;
    const ip = program("ip", "iproute2");
    const forwarding = await sysctl(c, `net.ipv4.conf.${tunnel.device}.forwarding`);
    this.#write({ ...this.#record, tunnel: { device: tunnel.device, forwarding } });
    await sysctl(c, `net.ipv4.conf.${tunnel.device}.forwarding`, "1");
    await run([...(c ? [ip, "-n", c] : [ip]), "route", "replace", "default", "dev", tunnel.device, "table", String(CONFINED_ROUTE_TABLE)]);
    await nftApply(confinedScript({ veth: this.veth, tunnel: tunnel.device, source: this.addresses.confined }), c);
    const servers = tunnel.dns.filter((s) => isIP(s) === 4);
    fs.writeFileSync(
      resolverFile(this.name),
      [
        "# written by myst: names are resolved by the provider, through the tunnel",
        ...(servers.length ? servers.map((s) => `nameserver ${s}`) : ["# the tunnel brings no resolver: lookups fail"]),
        "",
      ].join("\n"),
    );
    this.#up = true;
  }

  /** The session ended: the namespace stays (the app may still run in it), with no route. */
  tunnelDown(): void {
    this.#up = false;
  }

  async abandon(): Promise<void> {
    await this.remove();
  }

  /** Deletes the namespace (and what runs in it), its rule, routes, firewall table and resolver file. Idempotent. */
  async remove(): Promise<void> {
    const record = this.#record ?? readRecord(this.options.dataDir);
    if (record) await undo(record, this.options.dataDir, this.#log);
    this.#record = undefined;
    this.#up = false;
  }

  #write(record: ConfinementRecord): void {
    const file = confinementRecordFile(this.options.dataDir);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2), { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    this.#record = record;
  }
}

/** The forward/nat rules in the consumer's namespace: the veth into the tunnel only (none before it is up). */
export function confinedScript(o: { veth: string; tunnel?: string; source?: string }): string {
  const veth = `"${o.veth}"`;
  const into =
    o.tunnel && o.source
      ? [`    iifname ${veth} oifname "${o.tunnel}" accept`, `    iifname "${o.tunnel}" oifname ${veth} ct state established,related accept`]
      : [];
  return [
    `table ip ${CONFINED_TABLE}`,
    `delete table ip ${CONFINED_TABLE}`,
    `table ip ${CONFINED_TABLE} {`,
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    ...into,
    `    iifname ${veth} drop`,
    `    oifname ${veth} drop`,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    `    iifname ${veth} drop`,
    "  }",
    ...(o.tunnel && o.source
      ? [
          "  chain postrouting {",
          "    type nat hook postrouting priority srcnat; policy accept;",
          `    oifname "${o.tunnel}" ip saddr ${o.source} masquerade`,
          "  }",
        ]
      : []),
    "}",
    "",
  ].join("\n");
}

async function sysctl(netns: string | undefined, key: string, value?: string): Promise<string> {
  const argv = inNetns(netns, [program("sysctl", "procps"), ...(value === undefined ? ["-n", key] : ["-qw", `${key}=${value}`])]);
  return (await run(argv)).trim();
}

async function undo(record: ConfinementRecord, dataDir: string, log: Logger): Promise<void> {
  const ip = program("ip", "iproute2");
  const c = record.netns;
  // What still runs in the namespace (what the command left behind) goes with it: by PID.
  if (fs.existsSync(path.join("/run/netns", record.name))) {
    const pids = (await run([ip, "netns", "pids", record.name]).catch(() => "")).split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await run([ip, "netns", "del", record.name]).catch((err) => log.warn({ err: (err as Error).message }, "deleting the confined namespace failed"));
  }
  fs.rmSync(path.join("/etc/netns", record.name), { recursive: true, force: true });
  const consumerGone = c !== undefined && !fs.existsSync(path.join("/run/netns", c));
  if (!consumerGone) {
    const inC = (...args: string[]) => run(c ? [ip, "-n", c, ...args] : [ip, ...args]).catch(() => "");
    await inC("link", "del", record.veth);
    await inC("rule", "del", "priority", String(CONFINED_ROUTE_TABLE));
    await inC("route", "flush", "table", String(CONFINED_ROUTE_TABLE));
    await nftApply(`table ip ${CONFINED_TABLE}\ndelete table ip ${CONFINED_TABLE}\n`, c);
    // The tunnel device usually went with its session; when it is still there, as it was.
    if (record.tunnel) await sysctl(c, `net.ipv4.conf.${record.tunnel.device}.forwarding`, record.tunnel.forwarding).catch(() => undefined);
  }
  fs.rmSync(confinementRecordFile(dataDir), { force: true });
}

const NAME = /^myst-run-[0-9a-f]{6}$/;
const VETH = /^mystk[0-9a-f]{6}$/;
const DEVICE = /^[A-Za-z0-9_.-]{1,15}$/;

function readRecord(dataDir: string): ConfinementRecord | undefined {
  let text: string;
  try {
    text = fs.readFileSync(confinementRecordFile(dataDir), "utf8");
  } catch {
    return undefined;
  }
  const r = JSON.parse(text) as ConfinementRecord;
  // The record becomes commands and file names: fenced like a peer's words.
  const ok =
    r?.version === 1 &&
    Number.isInteger(r.pid) &&
    NAME.test(r.name) &&
    VETH.test(r.veth) &&
    (!r.tunnel || (DEVICE.test(r.tunnel.device) && /^[01]$/.test(r.tunnel.forwarding)));
  if (!ok)
    throw new ProtectionError(
      "BAD_RECORD",
      `${confinementRecordFile(dataDir)} is not a confined-namespace record; remove it (and the namespace it names, if any)`,
    );
  if (r.netns !== undefined) resolverFile(r.netns);
  return r;
}

/** At start: removes a confined namespace a myst that died left behind, and says so (null: nothing to do). */
export async function recoverConfinement(dataDir: string, log: Logger = silentLogger): Promise<string | null> {
  const record = readRecord(dataDir);
  if (!record || otherProcessAlive(record.pid)) return null;
  await undo(record, dataDir, log);
  const message = `removed the confined network namespace ${record.name} left by a myst (pid ${record.pid}) that ended without disconnecting`;
  log.warn({ netns: record.name, pid: record.pid }, message);
  return message;
}
