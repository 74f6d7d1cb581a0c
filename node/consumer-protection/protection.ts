import fs from "node:fs";
import path from "node:path";
import { silentLogger, type Logger } from "../log/logger";
import { requireNetworkCapabilities } from "../services/system";
import { sameEndpoint, type SessionProtection, type TunnelEndpoint, type TunnelGuard, type TunnelPlan } from "../session/service";
import { ProtectionError } from "./errors";
import { protectionRecordFile, readRecord, readRecordIfValid, type ProtectionRecord } from "./record";
import { keepControlRoutes, withoutHostRoute } from "./host-routes";
import { nftApply } from "./nft";
import { traced, tracedSync } from "../log/connect-trace";
import { nftSession, transact } from "./nft-session";
import { pointResolver, resolverFile, restoreResolver, snapshotResolver } from "./resolver";
import { baseKey, type GuardSpare } from "./guard-spare";
import { undo } from "./undo";
import { Admissions } from "./admissions";
import { armScript, endpointsScript, preparedGuardScript, unguardScript, type GuardBase, type GuardSpec } from "./rules";
import { spawner } from "../services/spawner";
import { otherProcessAlive } from "../lifecycle/process";
import type { ControlEndpoint } from "./control-endpoints";

export interface ProtectionOptions {
  /** Fail closed (default on): traffic stays blocked when the tunnel drops or myst dies, until disconnect. */
  killSwitch: boolean;
  /** Keep the local network reachable. */
  allowLan: boolean;
  /** The consumer's network namespace (tests, the demo); the machine itself when absent. */
  netns?: string;
  /**
   * The node's own control connections when the tunnel will carry them (the tunnel is in the
   * node's own namespace): they keep a host route via the machine's own gateway and the kill
   * switch lets exactly them out, so the broker, discovery and chain RPC keep working (see
   * control-endpoints.ts, docs/privacy.md).
   */
  control?: ControlEndpoint[];
  /** Where the record of what was changed lives (`<data-dir>`), so a crash can be undone at the next start. */
  dataDir: string;
  /** The disarmed table this node keeps between connections (config `killSwitchSpare`): taken by `prepare`, given back by `lift`. */
  spare?: GuardSpare;
  log?: Logger;
}

/** What is in force: nothing, protecting a live tunnel, or blocking because the tunnel is gone. */
export type ProtectionState = "off" | "protecting" | "blocked";

export { protectionRecordFile, readRecord, type ProtectionRecord };

/**
 * Consumer protection for one connection, the same for every tunnel type: a guard rule set
 * (nftables, one atomic table) installed before the tunnel comes up, the resolver pointed at the
 * provider's resolver from the moment the rules are armed, both undone by `lift()` (disconnect) — and, after a crash,
 * by `recoverProtection()` at the next start, from the record this writes before each change.
 */
export class ConsumerProtection implements SessionProtection {
  #state: ProtectionState = "off";
  #spec?: GuardSpec;
  #record?: ProtectionRecord;
  readonly #log: Logger;
  /** The disarmed table `prepare` is installing: true once it is in place. */
  #prepared?: Promise<boolean>;
  /** Whether `prepare` took the spare's table (guard-spare.ts), which may have been removed behind its back meanwhile. */
  #spareTaken = false;
  /** Whether `prepare`'s own first transaction made the table (none was there): then nothing came between it and an arming written behind it. */
  #madeFresh?: Promise<boolean>;
  /** What `admit` let out beside the plan, and how many hold each. */
  #admissions = new Admissions();
  /** The connection this one's blocking kill switch went to (`handOver`): nothing is undone here any more. */
  #successor?: ConsumerProtection;
  /** This connection took a blocking kill switch over (`handOver`): a connect that fails goes back to blocking, not to nothing. */
  #tookOver = false;
  /** The rules around the sets of the table in force, while they are a handed-over block's and not this connection's own. */
  #tableBase?: GuardBase;
  /** The resolver file pointed at the plan's resolvers once the rules are armed (engageBeside), and at which. */
  #pointed?: Promise<string | undefined>;
  /** The record's text as last written: the same record is not written again. */
  #written?: string;
  /**
   * Whether the resolver file is ours to put back at `lift`: this instance pointed it, or a dead myst's
   * record says it may have. A connect that failed before pointing it leaves it as it is (a network
   * manager may have rewritten it meanwhile).
   */
  #resolverOurs = false;

  constructor(readonly options: ProtectionOptions) {
    this.#log = options.log ?? silentLogger;
    resolverFile(options.netns); // fences the namespace name before anything is changed
  }

  /**
   * A new connect in this namespace, with the kill switch, while this connection's kill switch blocks (its session
   * ended): `next` takes the block as it is — the table in force, the record (the host routes, the resolver file's
   * snapshot from before the first session), the admissions — and blocks until its own arming replaces the rules in
   * one transaction (docs/privacy.md); a failed connect leaves it blocking. This one undoes nothing any
   * more; an admission given back to it goes to `next`.
   */
  handOver(next: ConsumerProtection): void {
    if (!next.options.killSwitch) throw new ProtectionError("NO_KILL_SWITCH", "a blocking kill switch goes over only to a connection with the kill switch");
    if (this.#state !== "blocked" || !this.#spec || next.options.netns !== this.options.netns || next.#spec)
      throw new ProtectionError("NOT_ENGAGED", "only a blocking kill switch goes over, to a new connection in the same namespace");
    [next.#state, next.#spec, next.#record, next.#resolverOurs, next.#admissions] = ["blocked", this.#spec, this.#record, this.#resolverOurs, this.#admissions];
    next.#tableBase = this.#tableBase ?? this.#base;
    next.#tookOver = true;
    this.#successor = next;
    this.#state = "off";
    this.#spec = this.#record = this.#written = undefined;
    this.#admissions = new Admissions();
    this.#log.info({ netns: this.options.netns }, "kill switch: the block stays in force until the new connection's rules replace it");
  }

  get state(): ProtectionState {
    return this.#state;
  }

  /** What `status` shows. */
  describe(): { state: ProtectionState; killSwitch: boolean; allowLan: boolean; message: string } {
    const message = {
      off: "no protection in force",
      protecting: this.options.killSwitch ? "kill switch on: traffic leaves only through the tunnel" : "DNS and IPv6 only through the tunnel (kill switch off)",
      blocked: "tunnel down, traffic blocked (kill switch): `myst disconnect` lets traffic out by this machine's own route",
    }[this.#state];
    // What is in force: a handed-over block keeps its own rules (--allow-lan or not) until this connection's arming.
    const inForce = this.#tableBase ?? this.#base;
    return { state: this.#state, killSwitch: inForce.killSwitch, allowLan: inForce.allowLan, message };
  }

  get #base(): GuardBase {
    return { killSwitch: this.options.killSwitch, allowLan: this.options.allowLan, control: this.options.control ?? [] };
  }

  /**
   * Gets ready before the session is known, in parallel with its negotiation, so that `engage` is
   * one `nft` transaction that only fills sets: installs the guard table with every rule in place
   * but disarmed (it lets everything pass), and starts the `nft` and `ip` that `engage` will give
   * their input. The table is installed only when nothing of ours is in force here: a kill switch
   * that holds (between sessions, or left by a dead myst) is never swapped for a disarmed table;
   * `engage` replaces it in one transaction instead. Recorded before it is installed, so a crash
   * leaves nothing behind that the next start does not remove. Undone by `discard` (the session did
   * not come to `engage`) or `lift`.
   */
  prepare(): void {
    requireNetworkCapabilities("the kill switch", { why: "to install its nftables rules" });
    spawner.warm();
    // The namespace's warm `nft -i` (started now if there is none): installing and arming are then
    // each one line to it, no process started (nft-session.ts).
    nftSession(this.options.netns);
    this.#madeFresh = undefined;
    let found: ProtectionRecord | undefined;
    try {
      found = readRecord(this.options.dataDir);
    } catch {
      // A record that is not one: `engage` says so.
      this.#prepared = Promise.resolve(false);
      return;
    }
    // The disarmed table this node kept from its last connection (guard-spare.ts): taken as it is, or replaced.
    const spares = this.#state === "off" && !!found?.prepared && found.pid === process.pid && this.options.spare !== undefined;
    const spared = spares ? this.options.spare!.take(this.options.netns, this.#base) : "none";
    this.#spareTaken = spared === "taken";
    if (this.#spareTaken) {
      this.#record = found;
      this.#prepared = Promise.resolve(true);
      return;
    }
    if (this.#state !== "off" || (found && !spares)) {
      this.#prepared = Promise.resolve(false);
      return;
    }
    this.#write({ version: 1, pid: process.pid, netns: this.options.netns, killSwitch: this.options.killSwitch, endpointRoutes: [], prepared: true });
    const netns = this.options.netns;
    const fresh = transact(preparedGuardScript(this.#base, spared === "replace" ? "replace" : "fresh"), netns, "nft: the prepared table installed");
    // A replace does not count as made fresh: an arming written behind it may land on the spare's table it replaces.
    this.#madeFresh = fresh.then(
      () => spared !== "replace",
      () => false,
    );
    this.#prepared = fresh
      .catch(() => transact(preparedGuardScript(this.#base, "replace"), netns))
      .then(
        () => true,
        (err) => {
          this.#log.warn({ err: (err as Error).message }, "could not prepare the kill switch's table; it is built when the tunnel is planned");
          return false;
        },
      );
  }

  /** The session ended before `engage`: the prepared table and commands go; a kill switch in force stays. */
  async discard(): Promise<void> {
    // `lift` reads whether the table was made (a spare may keep it).
    if ((await this.#prepared) && this.#state === "off") return this.lift();
    this.#prepared = this.#madeFresh = undefined;
  }

  engage(plan: TunnelPlan): Promise<void> {
    return this.engageBeside(plan).armed;
  }

  /**
   * Engages for a tunnel that comes up beside the arming: the endpoints' host routes are read and
   * recorded before anything can change them (the tunnel adds them; a crash must remove them), the
   * control endpoints' routes pinned, and meanwhile the rules armed in one transaction (`armed`
   * settles once both are done). What a dead myst left here (kept in force by
   * `recoverProtection(…, { keepFor })`) is taken over: its table is replaced atomically, and its
   * snapshot of the resolver file is the one restored at the end, not the file as it left it.
   */
  engageBeside(plan: TunnelPlan): TunnelGuard {
    let guard: TunnelGuard;
    try {
      requireNetworkCapabilities("the kill switch", { why: "to install its nftables rules" });
      // The resolvers and IPv6 the tunnel will bring, when known now: one rule set from the start.
      const spec: GuardSpec = {
        ...this.#base,
        device: plan.device,
        endpoints: plan.endpoints,
        tunnelPeers: plan.tunnelPeers ?? [],
        dns: plan.dns ?? [],
        ipv6: plan.ipv6 ?? false,
      };
      this.#spec = spec;
      // Read now, before any await: nothing the tunnel does can come first.
      const missing = withoutHostRoute(
        plan.endpoints.map((e) => e.address),
        this.options.netns,
      );
      const found = readRecord(this.options.dataDir);
      const inherited = found && found.netns === this.options.netns && !found.prepared ? found : undefined;
      const endpointRoutes = new Set(inherited?.endpointRoutes ?? []);
      // The resolver file as it is before anything of this session changed it (or as a dead myst found it).
      const resolver = inherited?.resolver ?? (spec.dns.length > 0 ? snapshotResolver(resolverFile(this.options.netns)) : undefined);
      if (inherited?.resolver) this.#resolverOurs = true;
      const record = (): ProtectionRecord => ({
        version: 1,
        pid: process.pid,
        netns: this.options.netns,
        killSwitch: this.options.killSwitch,
        endpointRoutes: [...endpointRoutes],
        ...(resolver ? { resolver } : {}),
      });
      // Written before the rules change; the endpoint routes are added to it before the tunnel (which adds them) may.
      this.#write(record());
      const prepared = { installed: this.#prepared, madeFresh: this.#madeFresh };
      this.#prepared = this.#madeFresh = undefined;
      const installed = this.#arm(spec, prepared, !!inherited);
      const routesKept = (async () => {
        for (const address of await missing) endpointRoutes.add(address);
        this.#write(record());
        await keepControlRoutes(spec.control ?? [], this.options.netns, endpointRoutes, () => this.#write(record()), this.#log);
      })();
      // Settles only once both have: an undo that follows a failure must not race the transaction.
      const armed = Promise.allSettled([installed, routesKept]).then(([i, r]) => {
        if (i.status === "rejected") throw i.reason;
        if (r.status === "rejected") throw r.reason;
        this.#write(record());
        this.#state = "protecting";
        this.#log.info(
          { netns: this.options.netns, killSwitch: this.options.killSwitch, device: plan.device, endpoints: plan.endpoints, control: spec.control },
          "consumer protection engaged",
        );
      });
      // Once armed, nothing but the plan's resolvers through the tunnel answers: the file names them
      // then, not after the handshake (tunnelUp). After the steps that were waiting for the arming
      // (the tunnel's peer), so that its file writes are not on their way.
      this.#pointed = armed
        .then(() => new Promise((resolve) => setImmediate(resolve)))
        .then(() => {
          if (!resolver || spec.dns.length === 0) return undefined;
          this.#resolverOurs = true;
          tracedSync("resolver file pointed", () => pointResolver(resolver, spec.dns));
          return spec.dns.join();
        });
      this.#pointed.catch(() => undefined);
      guard = {
        routesKept: traced("kill switch: routes recorded, control routes kept", routesKept),
        armed: traced("kill switch: armed (rules in force)", armed),
      };
    } catch (err) {
      guard = { routesKept: Promise.reject(err), armed: Promise.reject(err) };
    }
    // A caller that stops at the first rejection has seen it; the other one is not left unhandled.
    guard.routesKept.catch(() => undefined);
    guard.armed.catch(() => undefined);
    return guard;
  }

  /**
   * Arms the rules: our own table in place (prepared, or this connection's last session's), one
   * transaction fills its sets and arms it; otherwise the table is made and armed in one.
   */
  async #arm(spec: GuardSpec, preparing: { installed?: Promise<boolean>; madeFresh?: Promise<boolean> }, inherited: boolean): Promise<void> {
    if (preparing.madeFresh && (await this.#armBehindInstall(spec, preparing.madeFresh))) return;
    const prepared = (await preparing.installed) ?? false;
    // Made after the wait: it lets out what is admitted by then (an admission meanwhile changed nothing in nft).
    const arm = () => this.#armed(spec);
    const netns = this.options.netns;
    if (this.#spareTaken && this.#state === "off")
      // A spare's table is held for as long as the node waits for its next connection: one removed meanwhile (a
      // firewall reloaded, say) is made and armed in one transaction, as with no spare.
      return transact(arm(), netns, "nft: armed").catch(() => transact(preparedGuardScript(this.#base, "replace") + arm(), netns));
    // A handed-over block made for other rules around the sets (--allow-lan, the control endpoints): replaced and armed in one.
    const held = this.#tableBase;
    if (held && baseKey(held) !== baseKey(this.#base))
      return transact(preparedGuardScript(this.#base, "replace") + arm(), netns, "nft: replaced and armed").then(() => void (this.#tableBase = undefined));
    if (prepared || this.#state !== "off") return transact(arm(), netns, "nft: armed");
    if (inherited) return transact(preparedGuardScript(this.#base, "replace") + arm(), netns);
    await transact(preparedGuardScript(this.#base, "fresh") + arm(), netns).catch(() => transact(preparedGuardScript(this.#base, "replace") + arm(), netns));
  }

  /**
   * The arming written to the warm nft right behind the prepared table's install, without waiting for
   * its answer (while the negotiation was short, that install is often still running): it then takes
   * effect the moment the table is in, with no round trip through the helper between the two. It
   * counts only when that install made the table afresh: were a table there already (left by a dead
   * myst without a record), the arming may have landed on it before `prepare` replaces it, so it is
   * sent again on the replacement (false: the caller arms as before).
   */
  async #armBehindInstall(spec: GuardSpec, madeFresh: Promise<boolean>): Promise<boolean> {
    const arm = armScript(spec);
    const early = transact(arm, this.options.netns, "nft: armed (behind the install)");
    early.catch(() => undefined); // awaited below, after the install's answer: not left unhandled meanwhile
    if (!(await madeFresh)) {
      await early.catch(() => undefined);
      return false;
    }
    // Refused only when it did not follow the install after all (the warm nft ended between the two,
    // and a fresh nft took it): once more, now that the table is there.
    await early.catch(() => transact(arm, this.options.netns));
    return true;
  }

  async tunnelUp(tunnel: { device: string; dns: string[]; ipv6: boolean }): Promise<void> {
    if (!this.#spec) throw new ProtectionError("NOT_ENGAGED", "protection was not engaged before the tunnel came up");
    const before = this.#spec;
    this.#spec = { ...this.#spec, device: tunnel.device, dns: tunnel.dns, ipv6: tunnel.ipv6 };
    // Replaced only when the tunnel brought other resolvers or IPv6 than its plan announced.
    const same = before.device === tunnel.device && before.ipv6 === tunnel.ipv6 && before.dns.join() === tunnel.dns.join();
    if (!same) await transact(this.#armed(this.#spec), this.options.netns);
    // Pointed at the plan's resolvers once armed: again only when the tunnel brought others.
    const pointedAt = await this.#pointed?.catch(() => undefined);
    const resolver = this.#record!.resolver;
    if (tunnel.dns.length > 0) {
      if (pointedAt === tunnel.dns.join()) return;
      const snapshot = resolver ?? snapshotResolver(resolverFile(this.options.netns));
      this.#write({ ...this.#record!, resolver: snapshot });
      this.#resolverOurs = true;
      pointResolver(snapshot, tunnel.dns);
    } else {
      if (pointedAt !== undefined && resolver) restoreResolver(resolver);
      this.#log.warn({}, "the tunnel brings no resolver: name lookups are blocked while connected");
    }
  }

  /** The session ended without a disconnect: the kill switch holds; without it, everything is undone. */
  async tunnelDown(): Promise<void> {
    if (this.#state !== "protecting") return;
    if (this.options.killSwitch) {
      this.#state = "blocked";
      this.#log.warn({ netns: this.options.netns }, "tunnel down, traffic blocked by the kill switch until `myst disconnect`");
    } else {
      await this.lift();
    }
  }

  async abandon(): Promise<void> {
    // A connect that took a blocking kill switch over and failed: it blocks again, as before it started.
    if (this.#tookOver && this.#spec) return this.block();
    await this.lift();
  }

  /**
   * Between sessions of one connection (`--reconnect`): nothing passes but loopback (and the LAN
   * with `allowLan`) and what an admission still holds, not even the last provider's endpoint, until
   * the next `engage` replaces the rules atomically (a relay's TURN server may be `admit`ted alone).
   * The resolver file keeps pointing at the last attempted provider's resolver, which is unreachable
   * meanwhile; the record keeps the snapshot `lift` restores.
   */
  async block(): Promise<void> {
    if (!this.#spec) throw new ProtectionError("NOT_ENGAGED", "protection was never engaged: nothing to hold");
    if (!this.options.killSwitch) throw new ProtectionError("NO_KILL_SWITCH", "without the kill switch there is nothing to hold between sessions");
    this.#spec = { ...this.#spec, endpoints: [], tunnelPeers: [], dns: [] };
    await transact(this.#armed(this.#spec), this.options.netns);
    this.#state = "blocked";
  }

  /** Whether a kill switch is in force here: this connection's, or one a dead myst left for it to replace (what leaves must be admitted). */
  holds(): boolean {
    return this.options.killSwitch && this.#setsInForce();
  }

  /** A dead myst's kill switch left in force here (recoverProtection's `keepFor`), until this connection's `engage` replaces it. */
  #inherited(): boolean {
    if (this.#state !== "off" || this.#spec || this.#successor) return false;
    const found = readRecordIfValid(this.options.dataDir);
    return !!found?.killSwitch && !found.prepared && found.netns === this.options.netns && !otherProcessAlive(found.pid);
  }

  /**
   * Lets exactly `endpoints` out (address·protocol·port; their hosts in) beside the plan until `withdraw` gives each back: a
   * relay's TURN server before its first packet. Each call holds each endpoint once (admissions.ts): one already let out is
   * only counted. In force now, one transaction adds what is new; otherwise the next arming lets it out.
   */
  async admit(endpoints: TunnelEndpoint[]): Promise<void> {
    const plan = this.#spec?.endpoints ?? [];
    const present = new Set([...plan, ...this.#admissions.endpoints()].map((e) => e.address));
    const { fresh, waits, added } = this.#admissions.take(endpoints, plan);
    const hosts = [...new Set(fresh.map((e) => e.address))].filter((a) => !present.has(a));
    const adding = this.#setsInForce() && fresh.length > 0 ? transact(endpointsScript("add", fresh, hosts), this.options.netns) : Promise.resolve();
    added(adding);
    await adding;
    await Promise.all(waits);
    if (fresh.length > 0) this.#log.info({ netns: this.options.netns, endpoints: fresh }, "kill switch: let out (or held for the next arming)");
  }

  /** Gives back one `admit` of each endpoint: one no admission holds and the plan does not name leaves the sets (one transaction). */
  async withdraw(endpoints: TunnelEndpoint[]): Promise<void> {
    if (this.#successor) return this.#successor.withdraw(endpoints);
    const plan = this.#spec?.endpoints ?? [];
    await this.#takeOut(this.#admissions.give(endpoints, plan), plan);
  }

  /** The tunnel no longer goes to `endpoints` (it moved to another relay): they leave the plan, and the sets unless admitted. */
  async retire(endpoints: TunnelEndpoint[]): Promise<void> {
    const spec = this.#spec;
    if (!spec) return;
    const gone = spec.endpoints.filter((k) => endpoints.some((e) => sameEndpoint(k, e)));
    if (gone.length === 0) return;
    const left = spec.endpoints.filter((k) => !gone.includes(k));
    this.#spec = { ...spec, endpoints: left }; // before the transaction: an arming or a block meanwhile starts from it
    await this.#takeOut(this.#admissions.unheld(gone), left);
  }

  /** Deletes `gone` (and the hosts no endpoint still let out has) from the sets in force, in one transaction. */
  async #takeOut(gone: TunnelEndpoint[], plan: TunnelEndpoint[]): Promise<void> {
    if (!this.#setsInForce() || gone.length === 0) return;
    const left = new Set([...plan, ...this.#admissions.endpoints()].map((e) => e.address));
    const hosts = [...new Set(gone.map((e) => e.address))].filter((a) => !left.has(a));
    const hostsOf = (list: TunnelEndpoint[]) => hosts.filter((a) => list.some((e) => e.address === a));
    const out = (list: TunnelEndpoint[]) => transact(endpointsScript("delete", list, hostsOf(list)), this.options.netns);
    // One element missing (admitted while an arming was under way) fails all: then each alone.
    await out(gone).catch(() => Promise.all(gone.map((e) => out([e]).catch(() => undefined))));
    this.#log.info({ netns: this.options.netns, endpoints: gone }, "kill switch: no longer let out");
  }

  /** Whether an armed table is in force (this connection's, or a dead myst's it will replace): an admission must be made in nft too. */
  #setsInForce(): boolean {
    return (this.#state !== "off" && this.#spec !== undefined) || this.#inherited();
  }

  /** The rules to arm: the plan's endpoints and every admission's. */
  #armed(spec: GuardSpec): string {
    return armScript({ ...spec, endpoints: [...spec.endpoints, ...this.#admissions.besides(spec.endpoints)] });
  }

  /** Removes the rules and restores the resolver file; the end of protection (disconnect). Idempotent. */
  async lift(): Promise<void> {
    // Handed over (`handOver`): what is in force is the new connection's to lift.
    if (this.#successor) return;
    // The table is this instance's own layout once its install or an arming succeeded: only then may a spare keep it.
    const ownTable = (await this.#prepared) === true || this.#state !== "off";
    // A pointing still to come would follow the restore below.
    await this.#pointed?.catch(() => undefined);
    this.#prepared = this.#madeFresh = this.#pointed = undefined;
    // A record read from disk is a dead myst's: its resolver file is put back whatever this instance did.
    const record = this.#record ?? readRecord(this.options.dataDir);
    const spare = this.options.spare;
    // The table this node's spare holds (this instance was lifted before): the spare's, not undone here.
    const sparesOwn = !this.#record && !!record?.prepared && record.pid === process.pid && !!spare?.holds(record.netns);
    const keepTable = !!this.#record && ownTable && !!spare?.keeping;
    const kept = record && !sparesOwn ? await undo(record, { resolver: this.#record === undefined || this.#resolverOurs, keepTable }) : false;
    if (kept && spare!.hold(this.options.netns, this.#tableBase ?? this.#base))
      this.#write({ version: 1, pid: process.pid, netns: this.options.netns, killSwitch: this.options.killSwitch, endpointRoutes: [], prepared: true });
    else if (!sparesOwn) {
      if (kept) await nftApply(unguardScript(), this.options.netns);
      fs.rmSync(protectionRecordFile(this.options.dataDir), { force: true });
    }
    this.#record = this.#written = undefined;
    this.#resolverOurs = this.#tookOver = false;
    this.#spec = this.#tableBase = undefined;
    this.#admissions.clear();
    if (this.#state !== "off") this.#log.info({ netns: this.options.netns }, "consumer protection lifted");
    this.#state = "off";
  }

  #write(record: ProtectionRecord): void {
    this.#record = record;
    const text = JSON.stringify(record, null, 2);
    const file = protectionRecordFile(this.options.dataDir);
    if (text === this.#written && fs.existsSync(file)) return;
    tracedSync("kill switch: record written", () => {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
      fs.renameSync(`${file}.tmp`, file);
    });
    this.#written = text;
  }
}
