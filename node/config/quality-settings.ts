import { isIP } from "node:net";

/** The settings of the consumer's stage checks and the prober (docs/quality.md), parsed apart from the rest of the config. */
export interface QualitySettings {
  /**
   * A name the provider's resolver must answer with an address, through the tunnel (the DNS stage).
   * Default none: the resolver must answer at all (with neither this nor tunnelCheckUrl, no check runs).
   * Env MYST_TUNNEL_CHECK_NAME.
   */
  tunnelCheckName?: string;
  /**
   * An http URL, its host an IPv4 address, that answers `?bytes=N` with N bytes: the first byte and
   * the short throughput test through a tunnel. Default none: those stages are not checked for
   * tunnel types (the node contacts no third party unless told to). Env MYST_TUNNEL_CHECK_URL.
   */
  tunnelCheckUrl?: string;
  /**
   * The prober may probe tunnel types: this node runs in a network namespace of its own (a container
   * whose namespace is not the machine's), which it cannot always see by itself. Default false (it
   * is detected where /proc/1 is visible). Env MYST_PROBER_CONFINED.
   */
  proberConfined?: boolean;
}

export const QUALITY_ENV = {
  MYST_TUNNEL_CHECK_NAME: "tunnelCheckName",
  MYST_TUNNEL_CHECK_URL: "tunnelCheckUrl",
  MYST_PROBER_CONFINED: "proberConfined",
} as const;

const NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$/;

/** Parses one quality setting into `config`; `bad` throws the config error naming it. */
export function parseQualitySetting(
  config: QualitySettings,
  key: keyof QualitySettings,
  value: unknown,
  bad: (key: keyof QualitySettings, why: string) => never,
): void {
  switch (key) {
    case "tunnelCheckName":
      if (value === "") config.tunnelCheckName = undefined;
      else if (typeof value === "string" && NAME.test(value)) config.tunnelCheckName = value;
      else bad(key, "must be a DNS name");
      break;
    case "tunnelCheckUrl":
      config.tunnelCheckUrl = value === "" ? undefined : (checkUrl(value) ?? bad(key, "must be an http URL whose host is an IPv4 address"));
      break;
    case "proberConfined":
      if (value === true || value === "true" || value === "1") config.proberConfined = true;
      else if (value === false || value === "false" || value === "0") config.proberConfined = false;
      else bad(key, "must be true or false");
      break;
  }
}

function checkUrl(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const u = new URL(value);
    return u.protocol === "http:" && isIP(u.hostname) === 4 ? value : undefined;
  } catch {
    return undefined;
  }
}
