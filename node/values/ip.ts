import net from "node:net";

/**
 * Which addresses may be told to the public. A node never puts one of these in a proposal: they
 * mean nothing (or something else) outside its own network.
 *
 * IPv4: 0/8 (this network), 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (the carriers'
 * shared space, RFC 6598: CGNAT), 127/8 (loopback), 169.254/16 (link-local), 192.0.0/24 (IETF
 * protocol assignments), 224/4 (multicast), 240/4 (reserved, and the broadcast address).
 * IPv6, however it is spelled: 0::/16 (::, ::1, IPv4-compatible), fe80::/10 (link-local), fc00::/7
 * (unique local), ff00::/8 (multicast), ::ffff:0:0/96 (judged as the IPv4 address inside).
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

/**
 * An IP address in its one spelling: IPv4 as given, IPv6 as RFC 5952 writes it (the WHATWG URL
 * parser's serialization: `0:0:0:0:0:0:0:1` and `::0:1` are `::1`, `::ffff:127.0.0.1` is
 * `::ffff:7f00:1`). Undefined for anything else, an IPv6 zone id included.
 */
export function canonicalIp(address: string): string | undefined {
  const family = net.isIP(address);
  if (family === 4) return address;
  if (family !== 6) return undefined;
  try {
    return new URL(`http://[${address}]`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** The 8 groups of an IPv6 address in `canonicalIp`'s spelling (a dotted IPv4 tail is not expanded). */
export function ipv6Groups(canonical: string): number[] {
  const [head, tail] = canonical.includes("::") ? canonical.split("::") : [canonical, undefined];
  const h = head ? head.split(":").map((g) => Number.parseInt(g, 16)) : [];
  if (tail === undefined) return h;
  const t = tail ? tail.split(":").map((g) => Number.parseInt(g, 16)) : [];
  return [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

/** Whether `address` is an IP address the whole internet can mean the same thing by. */
export function isPublicAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) return !PRIVATE_V4.some((range) => inV4(address, range));
  if (family !== 6) return false;
  const canonical = canonicalIp(address);
  if (canonical === undefined) return false;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const [hi, lo] = [Number.parseInt(mapped[1], 16), Number.parseInt(mapped[2], 16)];
    return isPublicAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  const first = Number.parseInt(canonical.split(":")[0] || "0", 16);
  // 0000::/16: ::, ::1, the deprecated IPv4-compatible ::/96 and the rest of IETF's reserved 0::/8.
  if (first === 0) return false;
  if ((first & 0xffc0) === 0xfe80) return false; // link-local
  if ((first & 0xfe00) === 0xfc00) return false; // unique local
  if ((first & 0xff00) === 0xff00) return false; // multicast
  return true;
}

/** Whether `address` is in the carriers' shared space (100.64.0.0/10): a sign of carrier-grade NAT. */
export function isCarrierAddress(address: string): boolean {
  return net.isIPv4(address) && inV4(address, ["100.64.0.0", 10]);
}
