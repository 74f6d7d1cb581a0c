import { UndoOnDeath } from "./supervision";
import { inNetns, program, run, TunnelError } from "./system";

/** Address ranges a consumer may not reach through the provider unless allowed. */
export const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"];
/** The same for IPv6 (unique local, link-local, site-local), when the service carries IPv6. */
export const PRIVATE_RANGES_6 = ["fc00::/7", "fe80::/10", "fec0::/10"];

export interface FirewallOptions {
  netns?: string;
  /** The tunnel's subnet, e.g. 10.8.0.0/24. */
  subnet: string;
  /** The tun device the server uses. */
  tunDevice: string;
  /** The internet-facing interface; default: the one of the default route. */
  uplink?: string;
  /** Block consumers from private networks and from the provider itself. Default true. */
  blockPrivate?: boolean;
  /** Private ranges consumers may reach anyway. */
  allow?: string[];
  /** The provider's resolver for consumers, on its tunnel address: consumers may reach its port 53. */
  dnsAddress?: string;
  /** The tunnel's IPv6 subnet when the service carries IPv6: NAT66 out of the uplink, private ranges blocked. */
  subnet6?: string;
}

/**
 * The provider's rules for one service, in chains of its own (MYST-F-<dev>, MYST-I-<dev>,
 * MYST-N-<dev>) so they are added and removed as a unit: NAT of the tunnel subnet out of the
 * uplink, and (by default) no consumer traffic to private networks or to the provider itself.
 */
export class TunnelFirewall {
  readonly uplink: Promise<string>;
  #applied = false;
  /** Removes the rules should this node die without removing them itself. */
  readonly #undo = new UndoOnDeath();

  constructor(private readonly o: FirewallOptions) {
    this.uplink = o.uplink ? Promise.resolve(o.uplink) : defaultRouteDevice(o.netns);
    // Awaited (and its error reported) by apply(); until then a failure is not "unhandled".
    this.uplink.catch(() => undefined);
  }

  async apply(): Promise<void> {
    const uplink = await this.uplink;
    const ipt = (...args: string[]) => run(inNetns(this.o.netns, [program("iptables"), "-w", ...args]));
    const { F, I, N } = this.#chains();
    await this.remove();
    await run(inNetns(this.o.netns, [program("sysctl", "procps"), "-qw", "net.ipv4.ip_forward=1"]));
    await ipt("-N", F);
    await ipt("-N", I);
    await ipt("-t", "nat", "-N", N);
    this.#applied = true;
    await ipt("-I", "FORWARD", "-i", this.o.tunDevice, "-j", F);
    await ipt("-I", "INPUT", "-i", this.o.tunDevice, "-j", I);
    await ipt("-t", "nat", "-I", "POSTROUTING", "-j", N);
    await ipt("-t", "nat", "-A", N, "-s", this.o.subnet, "-o", uplink, "-j", "MASQUERADE");
    if (this.o.blockPrivate !== false) {
      for (const range of this.o.allow ?? []) await ipt("-A", F, "-d", range, "-j", "RETURN");
      for (const range of PRIVATE_RANGES) await ipt("-A", F, "-d", range, "-j", "REJECT", "--reject-with", "icmp-net-prohibited");
      await ipt("-A", I, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN");
      if (this.o.dnsAddress) {
        for (const proto of ["udp", "tcp"]) await ipt("-A", I, "-d", this.o.dnsAddress, "-p", proto, "--dport", "53", "-j", "RETURN");
      }
      await ipt("-A", I, "-j", "REJECT", "--reject-with", "icmp-port-unreachable");
    }
    if (this.o.subnet6) await this.#apply6(uplink);
    this.#undo.arm(this.#removals());
  }

  /** IPv6 from the tunnel: masqueraded to the uplink's address (NAT66), no private ranges, nothing to this host. */
  async #apply6(uplink: string): Promise<void> {
    const ipt6 = (...args: string[]) => run(inNetns(this.o.netns, [program("ip6tables", "iptables"), "-w", ...args]));
    const { F, I, N } = this.#chains();
    await run(inNetns(this.o.netns, [program("sysctl", "procps"), "-qw", "net.ipv6.conf.all.forwarding=1"]));
    await ipt6("-N", F);
    await ipt6("-N", I);
    await ipt6("-t", "nat", "-N", N);
    await ipt6("-I", "FORWARD", "-i", this.o.tunDevice, "-j", F);
    await ipt6("-I", "INPUT", "-i", this.o.tunDevice, "-j", I);
    await ipt6("-t", "nat", "-I", "POSTROUTING", "-j", N);
    await ipt6("-t", "nat", "-A", N, "-s", this.o.subnet6!, "-o", uplink, "-j", "MASQUERADE");
    if (this.o.blockPrivate !== false) {
      for (const range of PRIVATE_RANGES_6) await ipt6("-A", F, "-d", range, "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited");
      await ipt6("-A", I, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN");
      await ipt6("-A", I, "-p", "ipv6-icmp", "-j", "RETURN");
      await ipt6("-A", I, "-j", "REJECT", "--reject-with", "icmp6-port-unreachable");
    }
  }

  /** Removes every rule this firewall added; safe to call when nothing is there. */
  async remove(): Promise<void> {
    await this.#undo.disarm();
    for (const argv of this.#removals()) await run(argv).catch(() => undefined);
    this.#applied = false;
  }

  /** The commands that undo `apply` (each may fail harmlessly: what it removes is not there). */
  #removals(): string[][] {
    const { F, I, N } = this.#chains();
    const tools = [program("iptables"), ...(this.o.subnet6 ? [program("ip6tables", "iptables")] : [])];
    return tools.flatMap((tool) => {
      const t = (...args: string[]) => inNetns(this.o.netns, [tool, "-w", ...args]);
      return [
        t("-D", "FORWARD", "-i", this.o.tunDevice, "-j", F),
        t("-D", "INPUT", "-i", this.o.tunDevice, "-j", I),
        t("-t", "nat", "-D", "POSTROUTING", "-j", N),
        ...[
          ["filter", F],
          ["filter", I],
          ["nat", N],
        ].flatMap(([table, chain]) => [t("-t", table, "-F", chain), t("-t", table, "-X", chain)]),
      ];
    });
  }

  get applied(): boolean {
    return this.#applied;
  }

  #chains() {
    const d = this.o.tunDevice
      .toUpperCase()
      .replace(/[^A-Z0-9]/g, "")
      .slice(0, 16);
    return { F: `MYST-F-${d}`, I: `MYST-I-${d}`, N: `MYST-N-${d}` };
  }
}

async function defaultRouteDevice(netns?: string): Promise<string> {
  const out = await run(inNetns(netns, [program("ip", "iproute2"), "-4", "route", "show", "default"]));
  const m = /\bdev (\S+)/.exec(out);
  if (!m) throw new TunnelError("NO_UPLINK", "no default route to send consumer traffic out of: give the uplink interface (--uplink)");
  return m[1];
}
