import fs from "node:fs";

/**
 * Whether this process runs in a network namespace of its own: its namespace is not the one of
 * process 1 (the machine's init). Where /proc/1 is not visible (not root, hidepid) this cannot be
 * told, and the answer is no; in a container process 1 is the container's own, so there the
 * operator says so (`proberConfined`, docs/quality.md "Probers").
 */
export function inOwnNetworkNamespace(proc = "/proc"): boolean {
  try {
    return fs.readlinkSync(`${proc}/self/ns/net`) !== fs.readlinkSync(`${proc}/1/ns/net`);
  } catch {
    return false;
  }
}
