import { isIP } from "node:net";
import { UndoOnDeath } from "../supervision";
import { inNetns, program, run } from "../system";
import { ControlsError } from "./errors";

/** What consumers may not reach through the provider, to keep its address off block lists. */
export interface EgressSettings {
  /** Let consumers send mail directly (TCP 25). Default false: blocked. */
  allowSmtp?: boolean;
  /** Destination ports blocked (TCP and UDP): a number or a range "6881-6889". */
  blockPorts?: (number | string)[];
  /** Destination networks blocked, IPv4 or IPv6 CIDR. */
  blockCidrs?: string[];
}

const PORT_RANGE = /^(\d{1,5})(?:-(\d{1,5}))?$/;

/** The settings, checked: ports as iptables wants them ("25", "6881:6889"), CIDRs by family. */
export function checkEgress(s: EgressSettings = {}): { ports: string[]; v4: string[]; v6: string[] } {
  const ports = (s.allowSmtp ? [] : ["25"]).concat(
    (s.blockPorts ?? []).map((p) => {
      const m = PORT_RANGE.exec(String(p));
      const a = Number(m?.[1]);
      const b = m?.[2] === undefined ? a : Number(m[2]);
      if (!m || a < 1 || b > 65535 || b < a) throw new ControlsError("BAD_EGRESS_POLICY", `blocked port "${p}" is not a port or a range like 6881-6889`);
      return a === b ? String(a) : `${a}:${b}`;
    }),
  );
  const v4: string[] = [];
  const v6: string[] = [];
  for (const cidr of s.blockCidrs ?? []) {
    const [address, bits, extra] = cidr.split("/");
    const family = isIP(address ?? "");
    const max = family === 6 ? 128 : 32;
    if (!family || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
      throw new ControlsError("BAD_EGRESS_POLICY", `blocked network "${cidr}" is not an address or a CIDR`);
    (family === 6 ? v6 : v4).push(cidr);
  }
  return { ports: [...new Set(ports)], v4, v6 };
}

/**
 * The egress policy of one tunnel interface: a chain of its own (MYST-E-<dev>) in FORWARD for
 * packets from consumers, rejecting blocked destination ports (TCP reset / ICMP) and networks.
 * IPv6 too when the tunnel carries it. Only ports and addresses: no protocol is recognized.
 */
export class EgressPolicy {
  readonly #rules: ReturnType<typeof checkEgress>;
  /** Removes the chain should this node die without removing it (see UndoOnDeath). */
  readonly #undo = new UndoOnDeath();

  constructor(private readonly o: { netns?: string; device: string; ipv6?: boolean; settings?: EgressSettings }) {
    this.#rules = checkEgress(o.settings);
  }

  get chain(): string {
    return `MYST-E-${this.o.device
      .toUpperCase()
      .replace(/[^A-Z0-9]/g, "")
      .slice(0, 16)}`;
  }

  async apply(): Promise<void> {
    await this.remove();
    this.#undo.arm(this.#removals());
    const families: ["iptables" | "ip6tables", string[], string][] = [["iptables", this.#rules.v4, "icmp-net-prohibited"]];
    if (this.o.ipv6) families.push(["ip6tables", this.#rules.v6, "icmp6-adm-prohibited"]);
    for (const [tool, cidrs, unreachable] of families) {
      const ipt = (...args: string[]) => run(inNetns(this.o.netns, [program(tool, "iptables"), "-w", ...args]));
      await ipt("-N", this.chain);
      await ipt("-I", "FORWARD", "-i", this.o.device, "-j", this.chain);
      for (const port of this.#rules.ports) {
        await ipt("-A", this.chain, "-p", "tcp", "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset");
        await ipt(
          "-A",
          this.chain,
          "-p",
          "udp",
          "--dport",
          port,
          "-j",
          "REJECT",
          "--reject-with",
          tool === "iptables" ? "icmp-port-unreachable" : "icmp6-port-unreachable",
        );
      }
      for (const cidr of cidrs) await ipt("-A", this.chain, "-d", cidr, "-j", "REJECT", "--reject-with", unreachable);
    }
  }

  /** Removes the chain; safe when it is not there. */
  async remove(): Promise<void> {
    await this.#undo.disarm();
    for (const argv of this.#removals()) await run(argv).catch(() => undefined);
  }

  #removals(): string[][] {
    return (this.o.ipv6 ? (["iptables", "ip6tables"] as const) : (["iptables"] as const)).flatMap((tool) => {
      const t = (...args: string[]) => inNetns(this.o.netns, [program(tool, "iptables"), "-w", ...args]);
      return [t("-D", "FORWARD", "-i", this.o.device, "-j", this.chain), t("-F", this.chain), t("-X", this.chain)];
    });
  }
}
