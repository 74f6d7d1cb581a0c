import fs from "node:fs";
import type { ProviderPaymentSettings } from "../daemon/provider-node";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../values/myst";

/** The provider's payment policy as flags give it (amounts in MYST, the period in seconds). */
export interface PolicyFlags {
  maxSessions?: string | number;
  invoiceEvery?: string | number;
  invoiceAbove?: string;
  maxUnpaid?: string;
  minVaultBalance?: string;
  minEscrow?: string;
  exposurePercent?: string | number;
  maxExposure?: string;
  settleThreshold?: string;
  settleFeePercent?: string | number;
  settlementFee?: string;
  /** A file holding the relayer account's private key: settlements go through it (the identity needs no ETH). */
  settleViaRelayer?: string;
  settleOnSessionEnd?: boolean;
}

export type NodePolicy = ProviderPaymentSettings & { maxSessions: number };

/** The payment policy of the flags' defaults (a node that sells nothing still has one). */
export const DEFAULT_POLICY_FLAGS = {
  maxSessions: "50",
  invoiceEvery: "10",
  invoiceAbove: "0.01",
  maxUnpaid: "0.05",
  minVaultBalance: "0.1",
  minEscrow: "0.5",
  exposurePercent: "50",
  maxExposure: "1",
  settleThreshold: "1",
  settleFeePercent: "1",
  settlementFee: "0.001",
} as const;

function percent(value: unknown, flag: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 100)) throw new MystError("BAD_FLAG", `${flag} "${value}" is not a percentage from 0 to 100`);
  return n;
}

/** The relayer's key from its file (0600 is the operator's to set): 0x + 64 hex, nothing else. */
function relayerKey(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new MystError("BAD_FLAG", `--settle-via-relayer: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  if (!/^0x[0-9a-fA-F]{64}$/.test(text)) throw new MystError("BAD_FLAG", `--settle-via-relayer: ${file} must hold one private key, 0x + 64 hex digits`);
  return text;
}

export function parsePaymentPolicy(flags: PolicyFlags): NodePolicy {
  const o = { ...DEFAULT_POLICY_FLAGS, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) } as typeof DEFAULT_POLICY_FLAGS &
    PolicyFlags;
  const maxSessions = Number(o.maxSessions);
  if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new MystError("BAD_FLAG", "--max-sessions must be a positive whole number");
  const invoiceEvery = Number(o.invoiceEvery);
  if (!(invoiceEvery > 0)) throw new MystError("BAD_FLAG", `--invoice-every "${o.invoiceEvery}" is not a positive number of seconds`);
  return {
    maxSessions,
    invoiceEveryMs: invoiceEvery * 1000,
    invoiceAboveWei: mystToWei(String(o.invoiceAbove), "--invoice-above"),
    maxUnpaid: mystToWei(String(o.maxUnpaid), "--max-unpaid"),
    minVaultBalance: mystToWei(String(o.minVaultBalance), "--min-vault-balance"),
    minEscrow: mystToWei(String(o.minEscrow), "--min-escrow"),
    exposurePercentOfEscrow: percent(o.exposurePercent, "--exposure-percent"),
    maxExposure: mystToWei(String(o.maxExposure), "--max-exposure"),
    settleThreshold: mystToWei(String(o.settleThreshold), "--settle-threshold"),
    settleFeePercent: percent(o.settleFeePercent, "--settle-fee-percent"),
    settlementFeeWei: mystToWei(String(o.settlementFee), "--settlement-fee"),
    settleOnSessionEnd: flags.settleOnSessionEnd === true,
    ...(flags.settleViaRelayer !== undefined ? { relayerKey: relayerKey(flags.settleViaRelayer) } : {}),
  };
}
