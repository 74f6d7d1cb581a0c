import type { ConnectionStatus } from "./consumer-node";
import type { ConsumerProtection } from "../consumer-protection/protection";

/** A connection's status with its protection: "blocked" when the session is gone but the kill switch holds. */
export type ProtectedStatus = Omit<ConnectionStatus, "state"> & {
  state: ConnectionStatus["state"] | "blocked";
  protection?: ReturnType<ConsumerProtection["describe"]>;
};

export function protectedStatus(status: ConnectionStatus, protection: ConsumerProtection | undefined): ProtectedStatus {
  if (!protection) return status;
  return { ...status, ...(protection.state === "blocked" ? { state: "blocked" as const } : {}), protection: protection.describe() };
}
