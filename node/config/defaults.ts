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

/** A service's controls where its settings leave them out (`controls` of `POST /v1/services`, `myst service start`). */
export const CONTROLS_DEFAULTS = {
  /** The day of the month a monthly traffic cap's period starts. */
  monthStartDay: 1,
  /** When a cap is reached, running sessions are told and end this many seconds later. */
  noticeSeconds: 10,
} as const;
