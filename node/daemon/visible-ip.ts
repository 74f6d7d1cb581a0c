import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { MystError } from "../errors/MystError";

export type VisibleIpErrorCode = "IP_CHECK_UNCONFIGURED" | "IP_CHECK_FAILED" | "BAD_NETNS";

export class VisibleIpError extends MystError<VisibleIpErrorCode> {}

export interface VisibleIp {
  ip: string;
  url: string;
  netns?: string;
  checkedAt: string;
}

const NETNS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const TIMEOUT_MS = 5000;

/**
 * The address the internet sees: asks `url` (a service that answers with the caller's IP as
 * text) from this machine, or from inside `netns` when the tunnel runs in a namespace (tests,
 * the demo). The answer must be an IP address; anything else is an error, never shown as one.
 */
export async function checkVisibleIp(url: string | undefined, netns?: string): Promise<VisibleIp> {
  if (!url) throw new VisibleIpError("IP_CHECK_UNCONFIGURED", "no IP check service is configured: set ipCheckUrl (MYST_IP_CHECK_URL)");
  if (netns !== undefined && (!NETNS.test(netns) || !fs.existsSync(`/run/netns/${netns}`)))
    throw new VisibleIpError("BAD_NETNS", `"${netns.slice(0, 64)}" is not a network namespace of this machine`);
  const text = netns === undefined ? await fetchHere(url) : await fetchInNetns(url, netns);
  const ip = text.trim();
  if (!isIP(ip)) throw new VisibleIpError("IP_CHECK_FAILED", `${url} did not answer with an IP address`);
  return { ip, url, ...(netns ? { netns } : {}), checkedAt: new Date().toISOString() };
}

/**
 * On a connection of its own (no keep-alive pool): a socket kept from a check before the tunnel
 * came up is bound to the machine's own address, and once the tunnel takes the route its packets
 * go into the tunnel with that source, where the provider drops them — the check would hang, or
 * answer from before the switch.
 */
async function fetchHere(url: string): Promise<string> {
  const get = new URL(url).protocol === "https:" ? https.get : http.get;
  try {
    return await new Promise<string>((resolve, reject) => {
      const req = get(url, { agent: false, signal: AbortSignal.timeout(TIMEOUT_MS) }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`HTTP ${res.statusCode}`));
        }
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (text.length < 100) text += chunk;
        });
        res.on("end", () => resolve(text.slice(0, 100)));
        res.on("error", reject);
      });
      req.on("error", reject);
    });
  } catch (err) {
    throw new VisibleIpError("IP_CHECK_FAILED", `${url} did not answer: ${(err as Error).message}`, { cause: err });
  }
}

function fetchInNetns(url: string, netns: string): Promise<string> {
  const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(${TIMEOUT_MS})}).then(r=>r.ok?r.text():Promise.reject(new Error("HTTP "+r.status))).then(t=>process.stdout.write(t.slice(0,100)),e=>{process.stderr.write(String(e.message));process.exit(3)})`;
  return new Promise((resolve, reject) => {
    execFile("/usr/sbin/ip", ["netns", "exec", netns, process.execPath, "-e", script], { timeout: TIMEOUT_MS + 3000 }, (err, stdout, stderr) => {
      if (err) reject(new VisibleIpError("IP_CHECK_FAILED", `${url} did not answer in ${netns}: ${String(stderr).trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
  });
}
