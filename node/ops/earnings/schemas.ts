import { Type } from "@sinclair/typebox";
import { Address, SessionPath, Wei } from "../../values/schemas";

/** The schema of the earnings routes (amounts in wei). */

export const Earnings = Type.Object({
  sessions: Type.Array(
    Type.Object({
      sessionId: Type.String(),
      consumer: Address,
      promisedWei: Wei,
      serviceType: Type.Optional(Type.String({ description: "what was sold (relay: a relay's earnings per relayed session)" })),
      bytes: Type.Optional(Type.Integer({ description: "what the session moved, as this node metered it (known once it ended)" })),
      path: Type.Optional(SessionPath),
    }),
  ),
  totalPromisedWei: Wei,
  settledWei: Wei,
  unsettledWei: Wei,
  feesWei: { ...Wei, description: "relayers' fees taken out of the settled amounts" },
  netWei: { ...Wei, description: "settled less fees" },
  settlements: Type.Array(
    Type.Object({
      pairId: { ...Type.String(), description: "the (consumer, provider) pair's id: keccak256(abi.encode(consumer, provider))" },
      amountWei: Wei,
      paidWei: Type.Optional(Wei),
      feeWei: Type.Optional(Wei),
      txHash: Type.Union([Type.String(), Type.Null()]),
      at: Type.String(),
    }),
  ),
  pendingSettlements: Type.Array(
    Type.Object({
      pairId: Type.String(),
      consumer: Address,
      amountWei: Wei,
      state: Type.Union(["queued", "submitted", "retrying", "waiting-top-up", "rejected"].map((s) => Type.Literal(s))),
      attempts: Type.Integer(),
      lastError: Type.Optional(Type.String()),
      nextAttemptAt: Type.Optional(Type.String()),
      txHash: Type.Optional(Type.String()),
    }),
  ),
});
