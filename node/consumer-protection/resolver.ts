import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { ProtectionError } from "./errors";
import { confineHostLookups, nsswitchBeside, SYSTEM_NSSWITCH, writtenByMyst } from "./nsswitch";

/** What a file was before myst changed it: enough to put it back exactly. */
export type FileSnapshot =
  | { path: string; kind: "file"; content: string; mode: number }
  | { path: string; kind: "symlink"; target: string }
  | { path: string; kind: "absent"; createdDir?: string };

/**
 * The resolver file as it was, and the name-service switch beside it (a record written before
 * this was added has none: its switch is left as it is).
 */
export type ResolverSnapshot = FileSnapshot & { nsswitch?: FileSnapshot };

const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The resolver file that programs in `netns` read: `ip netns exec` mounts /etc/netns/<name>/resolv.conf
 * over /etc/resolv.conf when it exists; without a namespace, the machine's own /etc/resolv.conf.
 */
export function resolverFile(netns?: string): string {
  if (netns === undefined) return "/etc/resolv.conf";
  if (!NETNS_NAME.test(netns) || netns === "." || netns === "..") throw new ProtectionError("BAD_NETNS", `"${netns}" is not a network namespace name`);
  return path.join("/etc/netns", netns, "resolv.conf");
}

export function snapshotResolver(file: string): ResolverSnapshot {
  const nsswitch = snapshotFile(nsswitchBeside(file));
  // The directory the resolver file's snapshot may create is removed by it, not by the switch's.
  if (nsswitch.kind === "absent") delete nsswitch.createdDir;
  return { ...snapshotFile(file), nsswitch };
}

function snapshotFile(file: string): FileSnapshot {
  const stat = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!stat) {
    const dir = path.dirname(file);
    return { path: file, kind: "absent", ...(fs.existsSync(dir) ? {} : { createdDir: dir }) };
  }
  if (stat.isSymbolicLink()) return { path: file, kind: "symlink", target: fs.readlinkSync(file) };
  return { path: file, kind: "file", content: fs.readFileSync(file, "utf8"), mode: stat.mode & 0o7777 };
}

/**
 * Points the resolver file at `servers`. A regular file is rewritten in place (same inode), so
 * namespaces that bind-mounted it see the change; a symlink (systemd-resolved's stub) is replaced
 * by a file, not written through. The name-service switch beside it is made to send host lookups
 * through the resolver file when it sends them elsewhere too (nsswitch.ts): glibc's nss-resolve
 * would ask systemd-resolved in the root namespace, past the file and the kill switch.
 */
export function pointResolver(snapshot: ResolverSnapshot, servers: string[], o: { system?: string } = {}): void {
  if (servers.length === 0 || servers.some((s) => isIP(s) === 0)) throw new ProtectionError("BAD_DNS", `not resolver addresses: ${servers.join(", ")}`);
  const text = [
    "# written by myst while connected: names are resolved by the provider, through the tunnel.",
    "# `myst disconnect` puts the previous file back.",
    ...servers.map((s) => `nameserver ${s}`),
    "",
  ].join("\n");
  if (snapshot.kind === "absent" && snapshot.createdDir) fs.mkdirSync(snapshot.createdDir, { recursive: true });
  // As the file is now (it may already be ours, taken over from a myst that died): a link is replaced.
  if (fs.lstatSync(snapshot.path, { throwIfNoEntry: false })?.isSymbolicLink()) fs.unlinkSync(snapshot.path);
  fs.writeFileSync(snapshot.path, text, { mode: 0o644 });
  if (snapshot.nsswitch) confineHostLookups(snapshot.nsswitch.path, o.system ?? SYSTEM_NSSWITCH);
}

/** Puts the resolver file (and the switch beside it) back as the snapshot found them. Safe to run twice. */
export function restoreResolver(snapshot: ResolverSnapshot): void {
  // First: the directory the resolver file's snapshot created goes only once it is empty. The
  // switch only if myst's change is still there (it is left alone where nothing needed changing).
  if (snapshot.nsswitch && writtenByMyst(snapshot.nsswitch.path)) restoreFile(snapshot.nsswitch);
  restoreFile(snapshot);
}

function restoreFile(snapshot: FileSnapshot): void {
  const current = fs.lstatSync(snapshot.path, { throwIfNoEntry: false });
  switch (snapshot.kind) {
    case "file":
      if (current?.isSymbolicLink()) fs.unlinkSync(snapshot.path);
      fs.writeFileSync(snapshot.path, snapshot.content);
      fs.chmodSync(snapshot.path, snapshot.mode);
      return;
    case "symlink":
      if (current) fs.unlinkSync(snapshot.path);
      fs.symlinkSync(snapshot.target, snapshot.path);
      return;
    case "absent":
      if (current) fs.unlinkSync(snapshot.path);
      if (snapshot.createdDir && fs.existsSync(snapshot.createdDir) && fs.readdirSync(snapshot.createdDir).length === 0) fs.rmdirSync(snapshot.createdDir);
      return;
  }
}
