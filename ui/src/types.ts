/** The shapes the node's API and its event stream send (docs/api.md; amounts in wei as strings). */

export interface LiveSession {
  id: string;
  consumer: string;
  serviceType: string;
  state: string;
  startedAt: string;
  durationSeconds: number;
  bytesIn: number;
  bytesOut: number;
  earnedWei: string;
}

export interface ServiceView {
  type: string;
  offer: { country: string; ipType: string; pricePerHourWei: string; pricePerGiBWei: string; bandwidthMbps: number };
  announcement: { state: string; lastError?: string; expiresAt?: string };
  sessions: number;
  controls?: ServiceControls;
}

/** A service's provider controls as the node reports them (caps, schedule, access). */
export interface ServiceControls {
  offered: boolean;
  withdrawnBecause?: string;
  trafficCap?: Partial<Record<"daily" | "monthly", { capBytes: number; usedBytes: number; remainingBytes: number; resetsAt: string }>>;
  schedule?: { open: boolean; windows: string[]; nextChange?: string };
  access?: { policy: string };
}

export interface ProviderTopic {
  sessions: LiveSession[];
  services: ServiceView[];
}

export interface PendingSettlement {
  pairId: string;
  consumer: string;
  amountWei: string;
  state: string;
  attempts: number;
  lastError?: string;
}

export interface EarningsTopic {
  totalPromisedWei: string;
  settledWei: string;
  unsettledWei: string;
  settlements: { pairId: string; amountWei: string; txHash: string | null; at: string }[];
  pendingSettlements: PendingSettlement[];
  daily: { date: string; earnedWei: string }[];
  /** Relayer fees paid out of settlements, MYST wei. */
  feesWei: string;
  netWei: string;
  /** Gas paid for mined settlements, ETH wei. */
  gasFeesWei: string;
  settlementsMined: number;
}

export interface Check {
  ok: boolean;
  detail: string;
}

export interface HealthTopic {
  checkedAt: string;
  nats: Check;
  chain: Check;
  discovery: Check;
  registration: Check;
  /** Whether the node can write its state (promises) in its data dir. */
  store: Check;
  visibility: { serviceType: string; announcement: string; listed: boolean | null; reasons: string[] }[];
  notes: { at: string; kind: "refused" | "ended"; consumer: string; sessionId?: string; serviceType?: string; reason: string }[];
}

export interface ConnectionTopic {
  state: "connected" | "disconnected" | "connecting" | "blocked" | "reconnecting";
  sessionId?: string;
  provider?: string;
  serviceType?: string;
  country?: string;
  durationSeconds?: number;
  bytesIn?: number;
  bytesOut?: number;
  promisedWei?: string;
  pricePerHourWei?: string;
  pricePerGiBWei?: string;
  endReason?: string;
  protection?: { state: "off" | "protecting" | "blocked"; killSwitch: boolean; allowLan: boolean; message: string };
  /** Why the last connect failed: our code, the provider's refusal code when it said no, in words. */
  lastFailure?: { at: string; code: string; refusal?: string; message: string };
  /** The provider did not take the last promise (its store is full…), in its code and words. */
  paymentRefused?: { code: string; message: string };
}

export interface Proposal {
  provider: string;
  serviceType: string;
  location: { country: string; city?: string; ipType: string };
  price: { perHour: string; perGiB: string };
  bandwidthMbps: number;
  ipv6?: boolean;
  accessPolicy?: "open" | "allowlist";
}

export interface NodeState {
  provider?: ProviderTopic;
  earnings?: EarningsTopic;
  health?: HealthTopic;
  connection?: ConnectionTopic;
}
