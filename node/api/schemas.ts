import type { Static } from "@sinclair/typebox";
import type { ControlsSettingsSchema } from "../services/controls/settings-schema";
import type * as ConnectionS from "../ops/connection/schemas";
import type * as DashboardS from "../ops/dashboard/schemas";
import type * as EarningsS from "../ops/earnings/schemas";
import type * as ServicesS from "../ops/services/schemas";
import type * as VaultS from "../ops/vault/schemas";

/**
 * The API's schemas as clients see them: each operation group keeps its own (node/ops/<group>/
 * schemas.ts); this names the types the CLI and the dashboard use, made from those schemas.
 */

/** The vocabularies a client shows in its help. */
export { IP_TYPES } from "../proposal/proposal";
export { DEFAULT_SERVICE_TYPE, SERVICE_SETTINGS, SERVICE_TYPES } from "../services/catalog";
export { OFFER_DEFAULTS } from "../config/defaults";

export type StartServiceBody = Static<typeof ServicesS.StartServiceBody>;
/** The provider controls a service is started with (CLI flags, services.json, the API body). */
export type ControlsSettings = Static<typeof ControlsSettingsSchema>;
/** A service as `GET /v1/services` shows it, with its controls' status. */
export type ServiceView = Static<typeof ServicesS.ServiceView>;
export type ControlsStatus = Static<typeof ServicesS.ControlsStatus>;
export type ConnectBody = Static<typeof ConnectionS.ConnectBody>;
export type ConnectionView = Static<typeof ConnectionS.ConnectionView>;
export type Proposal = Static<typeof ConnectionS.ProposalPage>["proposals"][number];
export type Vault = Static<typeof VaultS.Vault>;
export type DepositBody = Static<typeof VaultS.DepositBody>;
export type DepositResult = Static<typeof VaultS.DepositResult>;
export type ExitResult = Static<typeof VaultS.ExitResult>;
export type WithdrawalResult = Static<typeof VaultS.WithdrawalResult>;
export type Earnings = Static<typeof EarningsS.Earnings>;
export type LiveSession = Static<typeof DashboardS.LiveSession>;
export type NodeHealth = Static<typeof DashboardS.NodeHealth>;
export type DailyEarnings = Static<typeof DashboardS.DailyEarnings>;
