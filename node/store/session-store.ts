import { writing } from "./errors";
import type { Db } from "./database";

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
    ) as {
      id: string;
      role: "provider" | "consumer";
      peer: string;
      service_type: string;
      started_at: number;
      ended_at: number | null;
      end_reason: string | null;
      bytes: number;
      promised: string;
    }[];
    return rows.map((r) => ({
      id: r.id,
      role: r.role,
      peer: r.peer,
      serviceType: r.service_type,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      endReason: r.end_reason,
      bytes: r.bytes,
      promised: BigInt(r.promised),
    }));
  }
}
