import net from "node:net";

/**
 * Which addresses may be told to the public. A node never puts one of these in a proposal: they
 * mean nothing (or something else) outside its own network.
 *
 * IPv4: 0/8 (this network), 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (the carriers'
 * shared space, RFC 6598: CGNAT), 127/8 (loopback), 169.254/16 (link-local), 192.0.0/24 (IETF
 * protocol assignments), 224/4 (multicast), 240/4 (reserved, and the broadcast address).
 * IPv6: ::/128, ::1, fe80::/10 (link-local), fc00::/7 (unique local), ff00::/8 (multicast),
 * ::ffff:0:0/96 (judged as the IPv4 address inside).
 *
 * Test and documentation ranges (198.18/15, 192.0.2/24, 2001:db8::/32…) are not refused: the test
 * network is made of them and stands for the internet.
 */
const PRIVATE_V4: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
];

function v4ToNumber(address: string): number {
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

function inV4(address: string, [base, bits]: [string, number]): boolean {
  return v4ToNumber(address) >>> (32 - bits) === v4ToNumber(base) >>> (32 - bits);
}

/** Whether `address` is an IP address the whole internet can mean the same thing by. */
export function isPublicAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) return !PRIVATE_V4.some((range) => inV4(address, range));
  if (family !== 6) return false;
  const lower = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return isPublicAddress(mapped[1]);
  if (lower === "::" || lower === "::1") return false;
  const first = Number.parseInt(lower.split(":")[0] || "0", 16);
  if ((first & 0xffc0) === 0xfe80) return false; // link-local
  if ((first & 0xfe00) === 0xfc00) return false; // unique local
  if ((first & 0xff00) === 0xff00) return false; // multicast
  return true;
}

/** Whether `address` is in the carriers' shared space (100.64.0.0/10): a sign of carrier-grade NAT. */
export function isCarrierAddress(address: string): boolean {
  return net.isIPv4(address) && inV4(address, ["100.64.0.0", 10]);
}
