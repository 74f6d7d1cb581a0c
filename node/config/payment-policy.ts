import fs from "node:fs";
import type { ErrorCode } from "../errors/catalogue";
import { MystError } from "../errors/MystError";
import { mystToWei } from "../values/myst";

/**
 * The provider's payment policy: how it invoices, whom it admits, when it settles (amounts in wei;
 * docs/payments.md explains each). One definition: the node's config (`paymentPolicy` in the config
 * file), the flags of `myst daemon` / `myst service start`, and the payments code all use this type.
 */
export interface PaymentPolicy {
  /** Sessions at once, all services together. */
  maxSessions: number;
  invoiceEveryMs: number;
  invoiceAboveWei: bigint;
  maxUnpaid: bigint;
  minVaultBalance: bigint;
  minEscrow: bigint;
  exposurePercentOfEscrow: number;
  maxExposure: bigint;
  settleThreshold: bigint;
  settleFeePercent: number;
  /** What one settlement transaction costs (wei of MYST); with a relayer, the most it may take. */
  settlementFeeWei: bigint;
  settleOnSessionEnd: boolean;
  /** Settle through this relayer account (its key, 0x + 64 hex) instead of paying gas from the identity's own. */
  relayerKey?: string;
}

/**
 * The policy as people write it (config file `paymentPolicy`, or the flags of the same names):
 * amounts in MYST, the period in seconds, percentages from 0 to 100.
 */
export interface PaymentPolicySettings {
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

/** The defaults, written once (docs/operating.md lists them; `myst service start --help` shows them). */
export const PAYMENT_POLICY_DEFAULTS = {
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
  settleOnSessionEnd: false,
} as const;

export const PAYMENT_POLICY_KEYS = [...Object.keys(PAYMENT_POLICY_DEFAULTS), "settleViaRelayer"] as (keyof PaymentPolicySettings)[];

/** How a setting is named in an error: `--max-unpaid` for a flag, `paymentPolicy.maxUnpaid` in the config file. */
export type SettingNamer = { name(key: keyof PaymentPolicySettings): string; code: ErrorCode };

const kebab = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
export const AS_FLAGS: SettingNamer = { name: (key) => (key === "exposurePercent" ? "--exposure-percent" : kebab(key)), code: "BAD_FLAG" };

function percent(value: unknown, name: string, code: ErrorCode): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 100)) throw new MystError(code, `${name} "${value}" is not a percentage from 0 to 100`);
  return n;
}

/** The relayer's key from its file (0600 is the operator's to set): 0x + 64 hex, nothing else. */
function relayerKey(file: string, name: string, code: ErrorCode): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new MystError(code, `${name}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  if (!/^0x[0-9a-fA-F]{64}$/.test(text)) throw new MystError(code, `${name}: ${file} must hold one private key, 0x + 64 hex digits`);
  return text;
}

/**
 * The policy of `settings` over `base` (default: the built-in defaults): only the settings given
 * change it. Each bad value is an error that names the setting (`as`: flags or the config file).
 */
export function parsePaymentPolicy(settings: PaymentPolicySettings, base?: PaymentPolicy, as: SettingNamer = AS_FLAGS): PaymentPolicy {
  const given = Object.fromEntries(Object.entries(settings).filter(([k, v]) => v !== undefined && PAYMENT_POLICY_KEYS.includes(k as never)));
  const start = base ?? parsePaymentPolicy(PAYMENT_POLICY_DEFAULTS, {} as PaymentPolicy, as);
  const p: PaymentPolicy = { ...start };
  const o = given as PaymentPolicySettings;
  const n = (key: keyof PaymentPolicySettings) => as.name(key);
  const wei = (key: keyof PaymentPolicySettings) => {
    try {
      return mystToWei(String(o[key]), n(key));
    } catch (err) {
      // A flag's amount keeps the amount's own code; a config file's is the config's.
      throw as === AS_FLAGS ? err : new MystError(as.code, (err as Error).message);
    }
  };
  if (o.maxSessions !== undefined) {
    p.maxSessions = Number(o.maxSessions);
    if (!Number.isInteger(p.maxSessions) || p.maxSessions < 1) throw new MystError(as.code, `${n("maxSessions")} must be a positive whole number`);
  }
  if (o.invoiceEvery !== undefined) {
    const s = Number(o.invoiceEvery);
    if (!(s > 0)) throw new MystError(as.code, `${n("invoiceEvery")} "${o.invoiceEvery}" is not a positive number of seconds`);
    p.invoiceEveryMs = s * 1000;
  }
  if (o.invoiceAbove !== undefined) p.invoiceAboveWei = wei("invoiceAbove");
  if (o.maxUnpaid !== undefined) p.maxUnpaid = wei("maxUnpaid");
  if (o.minVaultBalance !== undefined) p.minVaultBalance = wei("minVaultBalance");
  if (o.minEscrow !== undefined) p.minEscrow = wei("minEscrow");
  if (o.exposurePercent !== undefined) p.exposurePercentOfEscrow = percent(o.exposurePercent, n("exposurePercent"), as.code);
  if (o.maxExposure !== undefined) p.maxExposure = wei("maxExposure");
  if (o.settleThreshold !== undefined) p.settleThreshold = wei("settleThreshold");
  if (o.settleFeePercent !== undefined) p.settleFeePercent = percent(o.settleFeePercent, n("settleFeePercent"), as.code);
  if (o.settlementFee !== undefined) p.settlementFeeWei = wei("settlementFee");
  if (o.settleOnSessionEnd !== undefined) {
    if (typeof o.settleOnSessionEnd !== "boolean") throw new MystError(as.code, `${n("settleOnSessionEnd")} must be true or false`);
    p.settleOnSessionEnd = o.settleOnSessionEnd;
  }
  if (o.settleViaRelayer !== undefined) p.relayerKey = relayerKey(String(o.settleViaRelayer), n("settleViaRelayer"), as.code);
  return p;
}

/** The built-in policy (a node that sells nothing still has one). */
export function defaultPaymentPolicy(): PaymentPolicy {
  return parsePaymentPolicy({});
}
