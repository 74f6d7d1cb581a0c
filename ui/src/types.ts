/**
 * The shapes the node's API and its event stream send (docs/api.md; amounts in wei as strings):
 * generated from the API's own schemas into api-types.ts (`npm run ui-types`), never copied by hand.
 */
import type { ConnectionTopic, EarningsTopic, HealthTopic, LiveSession, Proposal, ProviderTopic, ServiceControls, ServiceView } from "./api-types";

export type { ConnectionTopic, EarningsTopic, HealthTopic, LiveSession, Proposal, ProviderTopic, ServiceControls, ServiceView };
export type PendingSettlement = EarningsTopic["pendingSettlements"][number];
export type Check = HealthTopic["nats"];

/** What the page knows of the node: the last value of each topic of the event stream. */
export interface NodeState {
  provider?: ProviderTopic;
  earnings?: EarningsTopic;
  health?: HealthTopic;
  connection?: ConnectionTopic;
}
