/**
 * What a service's offer says where the operator leaves it out: `POST /v1/services` (its schema's
 * defaults), `myst service start` (its flags' defaults). Written once, here.
 */
export const OFFER_DEFAULTS = {
  /** Unknown country (ISO 3166-1 user-assigned code). */
  country: "ZZ",
  ipType: "unknown",
  /** MYST per hour of session. */
  pricePerHour: "0.01",
  /** MYST per GiB moved. */
  pricePerGiB: "0.05",
  /** Each session's bandwidth, Mbit/s each way (0: no limit). */
  bandwidthMbps: 100,
} as const;
