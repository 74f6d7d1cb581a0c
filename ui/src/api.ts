/** The node's API as the page uses it: same-origin requests carrying the session cookie. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(res.status, "BAD_RESPONSE", `the node answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as { code?: string; message?: string };
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? `the node answered ${res.status}`);
  }
  return parsed as T;
}

const WEI = 10n ** 18n;

/** "1.5" MYST → wei; undefined for an empty field; throws on anything that is not a decimal amount. */
export function mystToWei(text: string): bigint | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  const m = /^(\d{1,12})(?:\.(\d{1,18}))?$/.exec(t);
  if (!m) throw new Error(`"${t}" is not an amount of MYST (like 0.5)`);
  return BigInt(m[1]) * WEI + BigInt((m[2] ?? "").padEnd(18, "0"));
}

/** Wei → MYST for people: up to `digits` decimals, trailing zeros dropped. */
export function formatMyst(wei: string | bigint, digits = 6): string {
  const v = BigInt(wei);
  const whole = v / WEI;
  const frac = (v % WEI).toString().padStart(18, "0").slice(0, digits).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole.toString();
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}

export const short = (address: string) => `${address.slice(0, 6)}…${address.slice(-4)}`;

/** A session's path in words (the connection's, a live session's, a stored one): "punched", "relayed via 0x12ab…cdef over UDP/443". */
export function pathText(p: { tunnel: string; relay?: { provider?: string; address: string; port?: number; transport?: string } } | null | undefined): string {
  if (!p) return "—";
  if (p.tunnel !== "relayed") return p.tunnel === "punched" || p.tunnel === "mapped" ? p.tunnel : `direct (${p.tunnel})`;
  const r = p.relay;
  const over = r?.transport ? ` over ${r.transport.toUpperCase()}${r.port ? `/${r.port}` : ""}` : "";
  return `relayed via ${r?.provider ? short(r.provider) : (r?.address ?? "a relay")}${over}`;
}
