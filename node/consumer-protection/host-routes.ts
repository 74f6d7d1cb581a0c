import { isIP } from "node:net";
import { program, run } from "../services/system";
import { spawner } from "../services/spawner";
import { ProtectionError } from "./errors";
import { hasHostRoute4, nftSession } from "./nft-session";
import type { Logger } from "../log/logger";

/* Host routes outside the tunnel: which endpoints have one, and pinning the way a control endpoint takes now. */

/**
 * Which of `addresses` have no host route now (each once): the IPv4 ones read from the main table
 * of the namespace's warm nft process (`/proc/<pid>/net/route`: no process started), or asked in
 * one `ip` batch when that is not known yet; the IPv6 ones one by one (`ip -batch` cannot ask IPv6
 * routes without `-6`, which applies to the whole batch).
 */
export async function withoutHostRoute(addresses: string[], netns: string | undefined): Promise<string[]> {
  const unique = [...new Set(addresses)].filter((a) => isIP(a) !== 0);
  const four = unique.filter((a) => isIP(a) === 4);
  const six = unique.filter((a) => isIP(a) === 6);
  const table = four.length > 0 ? nftSession(netns).mainRoutes4() : undefined;
  if (table !== undefined) {
    const sixMissing = await Promise.all(six.map(async (a) => ((await hostRoute(a, netns)) ? undefined : a)));
    return [...four.filter((a) => !hasHostRoute4(table, a)), ...sixMissing.filter((a): a is string => a !== undefined)];
  }
  const ask = `${four.map((a) => `route show exact ${a}/32`).join("\n")}\n`;
  const [shown, sixMissing] = await Promise.all([
    four.length === 0 ? "" : spawner.run([program("ip", "iproute2"), ...(netns ? ["-n", netns] : []), "-batch", "-"], ask),
    Promise.all(six.map(async (a) => ((await hostRoute(a, netns)) ? undefined : a))),
  ]);
  const routed = new Set(shown.split("\n").map((line) => line.split(" ")[0]));
  return [...four.filter((a) => !routed.has(a)), ...sixMissing.filter((a): a is string => a !== undefined)];
}

export const hostPrefix = (address: string) => `${address}/${isIP(address) === 6 ? 128 : 32}`;

/** Whether there is a route for exactly this host (not one that merely covers it). */
export async function hostRoute(address: string, netns?: string): Promise<boolean> {
  if (isIP(address) === 0) return false;
  const out = await spawner.run([
    program("ip", "iproute2"),
    ...(netns ? ["-n", netns] : []),
    isIP(address) === 6 ? "-6" : "-4",
    "route",
    "show",
    "exact",
    hostPrefix(address),
  ]);
  return out.trim().length > 0;
}

/**
 * Pins the route `address` takes now as a host route (via the same gateway and device), so a
 * tunnel's routes (0.0.0.0/1 and 128.0.0.0/1, ::/1 and 8000::/1) do not take it over.
 */
export async function routeAsNow(address: string, netns?: string): Promise<void> {
  const ip = [program("ip", "iproute2"), ...(netns ? ["-n", netns] : []), isIP(address) === 6 ? "-6" : "-4"];
  let route: { dev?: string; gateway?: string } | undefined;
  try {
    [route] = JSON.parse(await run([...ip, "-j", "route", "get", address])) as { dev?: string; gateway?: string }[];
  } catch (err) {
    throw new ProtectionError("CONTROL_ENDPOINT", `no route to the node's control endpoint ${address}: ${(err as Error).message}`, { cause: err });
  }
  if (!route?.dev) throw new ProtectionError("CONTROL_ENDPOINT", `no route to the node's control endpoint ${address}`);
  if (route.dev === "lo") return; // an address of this machine: never routed into a tunnel
  await run([...ip, "route", "add", hostPrefix(address), ...(route.gateway ? ["via", route.gateway] : []), "dev", route.dev]);
}

/**
 * The control connections keep the way out they have now, before the tunnel takes the default
 * route: each address is added to `endpointRoutes` and `save`d (the record written) before its route
 * is added, so a crash in between still removes it; one with no route now is taken out again.
 */
export async function keepControlRoutes(
  control: { address: string }[],
  netns: string | undefined,
  endpointRoutes: Set<string>,
  save: () => void,
  log: Logger,
): Promise<void> {
  for (const address of new Set(control.map((e) => e.address))) {
    if (await hostRoute(address, netns)) continue;
    endpointRoutes.add(address);
    save();
    try {
      await routeAsNow(address, netns);
    } catch (err) {
      // No way there now (an AAAA answer on a machine without IPv6, say): nothing to keep. The
      // node's connections use the addresses that do have a route.
      endpointRoutes.delete(address);
      save();
      log.warn({ address, err: (err as Error).message }, "a control endpoint has no route; it is not kept outside the tunnel");
    }
  }
}
