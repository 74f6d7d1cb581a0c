import fs from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { ProtectionError } from "./errors";

/** What a resolver file was before myst changed it: enough to put it back exactly. */
export type ResolverSnapshot =
  | { path: string; kind: "file"; content: string; mode: number }
  | { path: string; kind: "symlink"; target: string }
  | { path: string; kind: "absent"; createdDir?: string };

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
 * by a file, not written through.
 */
export function pointResolver(snapshot: ResolverSnapshot, servers: string[]): void {
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
}

/** Puts the resolver file back as the snapshot found it. Safe to run twice. */
export function restoreResolver(snapshot: ResolverSnapshot): void {
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
