import fs from "node:fs";
import net from "node:net";
import { program, run, TunnelError } from "../system";
import { uapiSocket } from "./uapi";

/** A provider's default interface names: `mystwg0`, `mystwg1`, … the first free one. */
export const DEFAULT_DEVICE_PREFIX = "mystwg";
/** How many default names are tried before giving up. */
export const DEFAULT_DEVICE_COUNT = 100;
export const DEFAULT_DEVICE = /^mystwg\d{1,2}$/;

/** Why a name cannot be taken, in words; undefined: it is free (and now ours). */
type Taken = string | undefined;

/**
 * An interface name this node holds for one WireGuard service, from its start to its stop (across
 * restarts of its wireguard-go). wireguard-go's control socket is `/var/run/wireguard/<name>.sock`
 * for the whole host, so a name is free only if no wireguard-go in any namespace serves it, no
 * interface of that name exists in the service's namespace, and no other node holds it.
 *
 * "No other node holds it" is the atomic part: the claim is a listening abstract unix socket
 * (`@myst-wireguard/<name>`), which one process alone can bind and which the kernel releases when
 * the process dies, however it dies. Two providers starting at once therefore never pick the same
 * name, and a killed node leaves no stale lock behind. Abstract sockets belong to the node's own
 * network namespace: nodes started in other namespaces are covered by the control-socket check.
 */
export class DeviceClaim {
  private constructor(
    readonly device: string,
    private readonly server: net.Server,
  ) {}

  /**
   * Claims `device` when given (`DEVICE_IN_USE`, naming `--device`, when it is taken), otherwise
   * the first free default name, `prefer` first (the name the service had last time, so a restart
   * keeps its interface name while it is free).
   */
  static async take(o: { device?: string; netns?: string; prefer?: string }): Promise<DeviceClaim> {
    const interfaces = once(() => interfacesIn(o.netns));
    if (o.device !== undefined) {
      const got = await DeviceClaim.#try(o.device, interfaces, o.netns);
      if (got instanceof DeviceClaim) return got;
      throw new TunnelError(
        "DEVICE_IN_USE",
        `the WireGuard interface ${o.device} is in use (${got}): choose another name with --device, or leave --device out and a free one is picked`,
      );
    }
    const reasons: string[] = [];
    const defaults = Array.from({ length: DEFAULT_DEVICE_COUNT }, (_, i) => `${DEFAULT_DEVICE_PREFIX}${i}`);
    const candidates = o.prefer && DEFAULT_DEVICE.test(o.prefer) ? [o.prefer, ...defaults.filter((d) => d !== o.prefer)] : defaults;
    for (const name of candidates) {
      const got = await DeviceClaim.#try(name, interfaces, o.netns);
      if (got instanceof DeviceClaim) return got;
      if (reasons.length < 3) reasons.push(`${name}: ${got}`);
    }
    throw new TunnelError(
      "DEVICE_IN_USE",
      `no free WireGuard interface name among ${DEFAULT_DEVICE_PREFIX}0-${DEFAULT_DEVICE_PREFIX}${DEFAULT_DEVICE_COUNT - 1} (${reasons.join("; ")}; …): name one with --device`,
    );
  }

  /** Lets the name go (idempotent). The interface itself goes with its wireguard-go. */
  async release(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  static async #try(device: string, interfaces: () => Promise<Set<string>>, netns?: string): Promise<DeviceClaim | string> {
    const server = net.createServer((c) => c.destroy());
    const bound = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once("error", resolve);
      server.listen(`\0myst-wireguard/${device}`, () => resolve(undefined));
    });
    if (bound) {
      if (bound.code === "EADDRINUSE") return "another myst node holds it";
      throw new TunnelError("WIREGUARD_FAILED", `could not claim the interface name ${device}: ${bound.message}`, { cause: bound });
    }
    server.unref();
    const claim = new DeviceClaim(device, server);
    const taken: Taken = (await answers(uapiSocket(device)))
      ? `another wireguard-go serves ${uapiSocket(device)}`
      : (await interfaces()).has(device)
        ? `an interface of that name exists${netns ? ` in namespace ${netns}` : ""}`
        : undefined;
    if (taken === undefined) return claim;
    await claim.release();
    return taken;
  }
}

/** Whether something accepts connections on the unix socket. */
export function answers(socket: string): Promise<boolean> {
  if (!fs.existsSync(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The interfaces of a namespace (the node's own without one), listed once per claim. */
export async function interfacesIn(netns?: string): Promise<Set<string>> {
  if (!netns) return new Set(fs.readdirSync("/sys/class/net"));
  // One line per interface: "3: name: <…" ("name@peer" for a veth).
  const out = await run([program("ip", "iproute2"), "-n", netns, "-o", "link", "show"]);
  return new Set(
    out
      .split("\n")
      .map((line) => line.split(": ")[1]?.split("@")[0])
      .filter((n): n is string => !!n),
  );
}

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}
