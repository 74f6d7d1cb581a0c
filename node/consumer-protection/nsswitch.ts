import fs from "node:fs";
import path from "node:path";

/** The machine's name-service switch: what programs in a namespace read when /etc/netns/<name>/ has none. */
export const SYSTEM_NSSWITCH = "/etc/nsswitch.conf";

/**
 * Host lookup sources that answer from this machine or through the resolver file. Any other asks
 * someone the resolver file does not name, outside the kill switch's reach: `resolve` is
 * systemd-resolved, reached over a Unix socket that crosses network namespaces and queries the
 * machine's own upstream; `mdns*` is avahi over D-Bus, sending to the LAN; `nis`, `ldap`, `sss`,
 * `wins` are servers of their own.
 */
const THROUGH_RESOLVER_FILE = new Set(["files", "dns", "myhostname", "mymachines"]);

const MARK = "# myst, while connected: host names only from files and the resolver file (the provider's resolver)";

/** Whether the switch at `file` is one myst wrote (so that putting it back undoes myst's change, not someone else's). */
export function writtenByMyst(file: string): boolean {
  try {
    return fs.readFileSync(file, "utf8").split("\n").includes(MARK);
  } catch {
    return false;
  }
}

/**
 * The name-service switch beside a resolver file: /etc/nsswitch.conf beside /etc/resolv.conf, and
 * /etc/netns/<name>/nsswitch.conf beside /etc/netns/<name>/resolv.conf (`ip netns exec` binds it
 * over /etc/nsswitch.conf, as it binds the resolver file).
 */
export function nsswitchBeside(resolverFile: string): string {
  return path.join(path.dirname(resolverFile), "nsswitch.conf");
}

/**
 * `text` with its `hosts:` line cut to the sources that go through the resolver file (with `dns`
 * added if it had none, and its `[STATUS=action]` items dropped, as they belonged to the sources
 * around them); undefined when its host lookups already go only that way.
 */
export function hostsThroughResolverFile(text: string): string | undefined {
  const lines = text.split("\n");
  const at = lines.findIndex((line) => /^\s*hosts\s*:/.test(line));
  if (at < 0) return undefined; // glibc's default for hosts is `dns [!UNAVAIL=return] files`
  const sources = lines[at]
    .replace(/#.*/, "")
    .replace(/^\s*hosts\s*:/, "")
    .replace(/\[[^\]]*\]/g, " ")
    .split(/\s+/)
    .filter(Boolean);
  if (sources.every((s) => THROUGH_RESOLVER_FILE.has(s)) && sources.includes("dns")) return undefined;
  const kept = sources.filter((s) => THROUGH_RESOLVER_FILE.has(s));
  if (!kept.includes("dns")) kept.push("dns");
  lines.splice(at, 1, MARK, `hosts: ${kept.join(" ")}`);
  return lines.join("\n");
}

/**
 * Makes the name-service switch at `file` send host lookups only through the resolver file, when
 * it does not already: its own text if it exists, else the machine's (which programs there would
 * otherwise read). Returns whether it wrote. A symlink is replaced, not written through.
 */
export function confineHostLookups(file: string, system = SYSTEM_NSSWITCH): boolean {
  const exists = fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined;
  let base: string;
  try {
    base = fs.readFileSync(exists ? file : system, "utf8");
  } catch {
    return false; // no switch at all: glibc's defaults go through the resolver file
  }
  const text = hostsThroughResolverFile(base);
  if (text === undefined) return false;
  if (fs.lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink()) fs.unlinkSync(file);
  fs.writeFileSync(file, text, { mode: 0o644 });
  return true;
}
