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

/** The node's session history (both roles), kept across restarts. */
export class SessionStore {
  constructor(private readonly db: Db) {}

  started(s: { id: string; role: "provider" | "consumer"; peer: string; serviceType: string; startedAt: number }): void {
    this.db
      .prepare("INSERT OR IGNORE INTO sessions (id, role, peer, service_type, started_at) VALUES (?, ?, ?, ?, ?)")
      .run(s.id, s.role, s.peer, s.serviceType, s.startedAt);
  }

  ended(id: string, e: { endedAt: number; reason: string; bytes: number; promised: bigint }): void {
    this.db.prepare("UPDATE sessions SET ended_at = ?, end_reason = ?, bytes = ?, promised = ? WHERE id = ?").run(e.endedAt, e.reason, e.bytes, e.promised.toString(), id);
  }

  list(limit = 100): SessionRecord[] {
    const rows = this.db.prepare("SELECT * FROM sessions ORDER BY started_at DESC LIMIT ?").all(limit) as {
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
