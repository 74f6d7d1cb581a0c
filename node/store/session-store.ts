import { writing } from "./errors";
import type { Db } from "./database";

/**
 * The path a session took, as its history keeps it (docs/relay.md): how the tunnel reached the
 * provider and, when relayed, through which relay. The consumer knows it first-hand; a provider
 * knows the relayed address from `session.relay`, and the rest from the consumer's word.
 */
export interface SessionPathRecord {
  tunnel: "public" | "mapped" | "local" | "punched" | "relayed";
  /** Relayed: the relay's identity (when known), its address (the consumer's: its TURN server; the provider's: the relayed address's host), and how the consumer reaches it. */
  relay?: { provider?: string; address: string; port?: number; transport?: string };
  /** How the consumer reached this node's own service, when the service knows it first-hand (a relay's own sessions: udp, tcp or tls). */
  transport?: string;
}

const TUNNEL_PATHS: readonly SessionPathRecord["tunnel"][] = ["public", "mapped", "local", "punched", "relayed"];

/** A stored path back from its JSON; anything else (a row from before the column, a damaged value) is no path. */
function parsePath(text: string | null): SessionPathRecord | null {
  if (!text) return null;
  try {
    const p = JSON.parse(text) as SessionPathRecord;
    if (!TUNNEL_PATHS.includes(p?.tunnel)) return null;
    const r = p.relay;
    if (r !== undefined && (typeof r !== "object" || r === null || typeof r.address !== "string")) return null;
    return {
      tunnel: p.tunnel,
      ...(r
        ? {
            relay: {
              ...(typeof r.provider === "string" ? { provider: r.provider } : {}),
              address: r.address,
              ...(Number.isInteger(r.port) ? { port: r.port } : {}),
              ...(typeof r.transport === "string" ? { transport: r.transport } : {}),
            },
          }
        : {}),
      ...(typeof p.transport === "string" ? { transport: p.transport } : {}),
    };
  } catch {
    return null;
  }
}

export interface SessionRecord {
  id: string;
  role: "provider" | "consumer";
  peer: string;
  serviceType: string;
  startedAt: number;
  endedAt: number | null;
  endReason: string | null;
  bytes: number;
  promised: bigint;
  /** The path it took, when known (a consumer's tunnel session, a provider's confirmed one). */
  path: SessionPathRecord | null;
}

/** A session record as the API and `--json` show it: times in ISO 8601, the amount in wei as a string. */
export interface SessionView {
  id: string;
  role: "provider" | "consumer";
  peer: string;
  serviceType: string;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  bytes: number;
  promisedWei: string;
  path: SessionPathRecord | null;
}

export function sessionView(s: SessionRecord): SessionView {
  return {
    id: s.id,
    role: s.role,
    peer: s.peer,
    serviceType: s.serviceType,
    startedAt: new Date(s.startedAt).toISOString(),
    endedAt: s.endedAt === null ? null : new Date(s.endedAt).toISOString(),
    endReason: s.endReason,
    bytes: s.bytes,
    promisedWei: s.promised.toString(),
    path: s.path,
  };
}

/** The node's session history (both roles), kept across restarts. */
export class SessionStore {
  constructor(private readonly db: Db) {}

  started(s: { id: string; role: "provider" | "consumer"; peer: string; serviceType: string; startedAt: number }): void {
    writing(this.db, "recording a session", () =>
      this.db
        .prepare("INSERT OR IGNORE INTO sessions (id, role, peer, service_type, started_at) VALUES (?, ?, ?, ?, ?)")
        .run(s.id, s.role, s.peer, s.serviceType, s.startedAt),
    );
  }

  ended(id: string, e: { endedAt: number; reason: string; bytes: number; promised: bigint }): void {
    writing(this.db, "recording a session's end", () =>
      this.db
        .prepare("UPDATE sessions SET ended_at = ?, end_reason = ?, bytes = ?, promised = ? WHERE id = ?")
        .run(e.endedAt, e.reason, e.bytes, e.promised.toString(), id),
    );
  }

  /** The path a session took (set again when it changes: a relay replaced mid-session). */
  path(id: string, path: SessionPathRecord): void {
    writing(this.db, "recording a session's path", () => this.db.prepare("UPDATE sessions SET path = ? WHERE id = ?").run(JSON.stringify(path), id));
  }

  /** The stored records of these sessions, by id (those the history knows). */
  byId(ids: string[]): Map<string, SessionRecord> {
    const get = this.db.prepare("SELECT * FROM sessions WHERE id = ?");
    const out = new Map<string, SessionRecord>();
    for (const id of new Set(ids)) {
      const row = get.get(id) as SessionRow | undefined;
      if (row) out.set(id, fromRow(row));
    }
    return out;
  }

  /** When each of these sessions started (ms), for those the history knows. */
  startTimes(ids: string[]): Map<string, number> {
    const get = this.db.prepare("SELECT started_at FROM sessions WHERE id = ?");
    const out = new Map<string, number>();
    for (const id of new Set(ids)) {
      const row = get.get(id) as { started_at: number } | undefined;
      if (row) out.set(id, row.started_at);
    }
    return out;
  }

  /** Newest first; only one role's when `role` is given. */
  list(limit = 100, role?: "provider" | "consumer"): SessionRecord[] {
    const rows = (
      role
        ? this.db.prepare("SELECT * FROM sessions WHERE role = ? ORDER BY started_at DESC LIMIT ?").all(role, limit)
        : this.db.prepare("SELECT * FROM sessions ORDER BY started_at DESC LIMIT ?").all(limit)
    ) as SessionRow[];
    return rows.map(fromRow);
  }
}

interface SessionRow {
  id: string;
  role: "provider" | "consumer";
  peer: string;
  service_type: string;
  started_at: number;
  ended_at: number | null;
  end_reason: string | null;
  bytes: number;
  promised: string;
  path: string | null;
}

const fromRow = (r: SessionRow): SessionRecord => ({
  id: r.id,
  role: r.role,
  peer: r.peer,
  serviceType: r.service_type,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  endReason: r.end_reason,
  bytes: r.bytes,
  promised: BigInt(r.promised),
  path: parsePath(r.path),
});
