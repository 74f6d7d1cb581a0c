import fs from "node:fs";
import { isIP } from "node:net";
import os from "node:os";
import path from "node:path";
import { MystError } from "../errors/MystError";
import { readBrokerCredentials, type BrokerCredentials } from "./broker-credentials";
import { parseQualitySetting, QUALITY_ENV, type QualitySettings } from "./quality-settings";
import { defaultPaymentPolicy, PAYMENT_POLICY_KEYS, parsePaymentPolicy, type PaymentPolicy, type PaymentPolicySettings } from "./payment-policy";

/**
 * Every setting of a node, its default, and where it can come from. Precedence, lowest first:
 * defaults → config file (`<dataDir>/config.json`, or `--config`) → environment → flags.
 * Validated once, at start-up, by `loadConfig`; inner code takes a `MystConfig` and trusts it.
 */
export interface MystConfig extends QualitySettings {
  /** Keystore, registration records, local state. Default `~/.myst`. Env MYST_DATA_DIR, flag --data-dir. */
  dataDir: string;
  /** Ethereum JSON-RPC URL. Default http://127.0.0.1:8545. Env MYST_RPC_URL, flag --rpc-url. */
  rpcUrl: string;
  /** Deployment file written by scripts/deploy.ts. Default `<package>/deployments/localhost.json`. Env MYST_DEPLOYMENT, flag --deployment. */
  deploymentFile: string;
  /** NATS servers (a cluster may list several). Default nats://127.0.0.1:4222. Env MYST_BROKER_URLS (comma-separated), flag --broker-url (repeatable). */
  brokerUrls: string[];
  /**
   * The broker user this node logs in as, with `brokerPasswordFile`. Default none (the broker's
   * own default role; with the project's configuration, a node). Env MYST_BROKER_USER, flag --broker-user.
   * nats.js ignores `user:pass@` in a broker URL: credentials come from these settings only.
   */
  brokerUser?: string;
  /** A file holding the password of `brokerUser` (one line). Env MYST_BROKER_PASSWORD_FILE, flag --broker-password-file. */
  brokerPasswordFile?: string;
  /** A file holding a broker token (one line). Env MYST_BROKER_TOKEN_FILE, flag --broker-token-file. */
  brokerTokenFile?: string;
  /** A file holding a user nkey seed (`SU…`, one line). Env MYST_BROKER_NKEY_FILE, flag --broker-nkey-file. */
  brokerNkeyFile?: string;
  /** A NATS `.creds` file (decentralized JWT and its nkey seed). Env MYST_BROKER_CREDS_FILE, flag --broker-creds-file. */
  brokerCredsFile?: string;
  /** Not a setting: the credential the settings above name, read once by `loadConfig`. At most one kind. */
  brokerCredentials?: BrokerCredentials;
  /**
   * Discovery replicas, tried in order (a query fails over to the next). Default
   * http://127.0.0.1:4050. Env MYST_DISCOVERY_URLS (comma-separated), flag --discovery-url (repeatable).
   */
  discoveryUrls: string[];
  /** trace | debug | info | warn | error | silent. Default info. Env MYST_LOG_LEVEL, flag --log-level. */
  logLevel: LogLevel;
  /** json (one object per line, for collectors) | pretty (coloured lines for people). Default json. Env MYST_LOG_FORMAT, flag --log-format. */
  logFormat: LogFormat;
  /** Address the daemon's REST API listens on. Default 127.0.0.1 (local only). Env MYST_API_HOST, flag --api-host. */
  apiHost: string;
  /** Port of the daemon's REST API; 0 picks a free one. Default 4449. Env MYST_API_PORT, flag --api-port. */
  apiPort: number;
  /** Light scrypt for new keystores (fast, weaker; tests and throwaway identities). Default false. Env MYST_LIGHT_KDF=1, flag --light-kdf. */
  lightKdf: boolean;
  /** How long `register` waits for its transaction to be mined before reporting it in progress. Default 60 s. Env MYST_REGISTRATION_TIMEOUT_MS. */
  registrationTimeoutMs: number;
  /** Dialogs one peer may have open with this node at once; past it its new dialogs are refused (TOO_MANY_DIALOGS). Default 8. Env MYST_MAX_DIALOGS_PER_PEER. */
  maxDialogsPerPeer: number;
  /** Sessions one consumer may hold with this provider at once, unconfirmed ones included (TOO_MANY_SESSIONS past it). Default 2. Env MYST_MAX_SESSIONS_PER_CONSUMER. */
  maxSessionsPerConsumer: number;
  /** Discovery: service types one provider may have in the index at once (PROVIDER_LIMIT past it). Default 16. Env MYST_MAX_SERVICE_TYPES_PER_PROVIDER. */
  maxServiceTypesPerProvider: number;
  /**
   * How long a session outlives silence on the broker (keepalives unanswered) while its tunnel
   * still carries traffic or the broker is down: a NATS outage shorter than this ends no session.
   * Default 120 s. Env MYST_OUTAGE_TOLERANCE_MS.
   */
  outageToleranceMs: number;
  /**
   * A service that answers with the caller's IP address as plain text (the dashboard's "visible
   * IP", checked before and after connecting). Default none: the node contacts no third party
   * unless told to. Env MYST_IP_CHECK_URL.
   */
  ipCheckUrl?: string;
  /**
   * STUN servers ("host:port", port 3478 by default) the node asks how the internet sees it, at
   * start and when its network changes (docs/reachability.md). Default none: the node contacts no
   * third party unless told to, and then measures nothing, asks its router for no port and puts no
   * direct contact in its proposals. Env MYST_STUN_SERVERS (comma-separated).
   */
  stunServers: string[];
  /**
   * Where this node is (ISO 3166-1 alpha-2, e.g. "DE"), said by its owner: as a consumer it picks a
   * relay in this country first (docs/relay.md "Which relay"). Default none: the provider's country
   * first. Env MYST_COUNTRY.
   */
  country?: string;
  /** While measuring, ask the home router to open a port (PCP, NAT-PMP, UPnP-IGD). Default true. Env MYST_PORT_MAPPING (true/false). */
  portMapping: boolean;
  /** The local UDP port reachability is measured from, which the proposals' direct contacts lead to; 0: any free one. Default 0. Env MYST_NAT_PORT. */
  natPort: number;
  /**
   * A consumer daemon keeps one unconfigured wireguard-go (no key, address, route or peer) ready in its
   * namespace, so a WireGuard connect does not wait for one to start (docs/connect-path.md). Default
   * false. Env MYST_WIREGUARD_SPARE (true/false).
   */
  wireguardSpare: boolean;
  /**
   * A consumer daemon keeps its kill switch's table between connections, disarmed (it blocks nothing),
   * so that a connect's only nftables change is the arming (docs/privacy.md, docs/connect-path.md);
   * removed when the node stops. Default false. Env MYST_KILL_SWITCH_SPARE (true/false).
   */
  killSwitchSpare: boolean;
  /**
   * A consumer daemon keeps one openvpn started and waiting for its config (none yet: no key, tun device or
   * socket) in its namespace, so an OpenVPN connect does not wait for one to start (docs/connect-path.md).
   * Default false. Env MYST_OPENVPN_SPARE (true/false).
   */
  openvpnSpare: boolean;
  /**
   * The provider's payment policy, for every service it sells: invoicing, whom it admits, when it
   * settles. In the config file an object with any of `maxSessions` (default 50), `invoiceEvery`
   * (seconds, 10), `invoiceAbove` (MYST, 0.01), `maxUnpaid` (0.05), `minVaultBalance` (0.1),
   * `minEscrow` (0.5), `exposurePercent` (50), `maxExposure` (1), `settleThreshold` (1),
   * `settleFeePercent` (1), `settlementFee` (0.001), `settleOnSessionEnd` (false) and
   * `settleViaRelayer` (a key file; default none); the flags of the same names override it
   * (config/payment-policy.ts, docs/payments.md).
   */
  paymentPolicy: PaymentPolicy;
}

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The directory of myst's package.json, from the sources or from dist/. */
export const PACKAGE_ROOT = findPackageRoot(__dirname);

function findPackageRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, "package.json"))) return d;
    if (path.dirname(d) === d) return process.cwd();
  }
}

export function defaultConfig(home = os.homedir()): MystConfig {
  return {
    dataDir: path.join(home, ".myst"),
    rpcUrl: "http://127.0.0.1:8545",
    deploymentFile: path.join(PACKAGE_ROOT, "deployments", "localhost.json"),
    brokerUrls: ["nats://127.0.0.1:4222"],
    brokerUser: undefined,
    brokerPasswordFile: undefined,
    brokerTokenFile: undefined,
    brokerNkeyFile: undefined,
    brokerCredsFile: undefined,
    discoveryUrls: ["http://127.0.0.1:4050"],
    logLevel: "info",
    logFormat: "json",
    apiHost: "127.0.0.1",
    apiPort: 4449,
    lightKdf: false,
    registrationTimeoutMs: 60_000,
    maxDialogsPerPeer: 8,
    maxSessionsPerConsumer: 2,
    outageToleranceMs: 120_000,
    maxServiceTypesPerProvider: 16,
    stunServers: [],
    country: undefined,
    portMapping: true,
    natPort: 0,
    wireguardSpare: false,
    killSwitchSpare: false,
    openvpnSpare: false,
    ipCheckUrl: undefined,
    paymentPolicy: defaultPaymentPolicy(),
    tunnelCheckName: undefined,
    tunnelCheckUrl: undefined,
    proberConfined: false,
  };
}

export class ConfigError extends MystError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONFIG_INVALID", message, options);
  }
}

/** Settings as the command line gives them (all optional, strings as typed). */
export interface ConfigFlags {
  config?: string;
  dataDir?: string;
  rpcUrl?: string;
  deployment?: string;
  brokerUrl?: string[];
  brokerUser?: string;
  brokerPasswordFile?: string;
  brokerTokenFile?: string;
  brokerNkeyFile?: string;
  brokerCredsFile?: string;
  discoveryUrl?: string[];
  logLevel?: string;
  logFormat?: string;
  apiHost?: string;
  apiPort?: string;
  lightKdf?: boolean;
}

type Raw = Partial<Record<keyof MystConfig, unknown>>;
type Source = Partial<Record<keyof MystConfig, string>>;

const ENV: Record<string, keyof MystConfig> = {
  MYST_DATA_DIR: "dataDir",
  MYST_RPC_URL: "rpcUrl",
  MYST_DEPLOYMENT: "deploymentFile",
  MYST_BROKER_URLS: "brokerUrls",
  MYST_BROKER_USER: "brokerUser",
  MYST_BROKER_PASSWORD_FILE: "brokerPasswordFile",
  MYST_BROKER_TOKEN_FILE: "brokerTokenFile",
  MYST_BROKER_NKEY_FILE: "brokerNkeyFile",
  MYST_BROKER_CREDS_FILE: "brokerCredsFile",
  MYST_DISCOVERY_URLS: "discoveryUrls",
  MYST_LOG_LEVEL: "logLevel",
  MYST_LOG_FORMAT: "logFormat",
  MYST_API_HOST: "apiHost",
  MYST_API_PORT: "apiPort",
  MYST_LIGHT_KDF: "lightKdf",
  MYST_REGISTRATION_TIMEOUT_MS: "registrationTimeoutMs",
  MYST_MAX_DIALOGS_PER_PEER: "maxDialogsPerPeer",
  MYST_MAX_SESSIONS_PER_CONSUMER: "maxSessionsPerConsumer",
  MYST_MAX_SERVICE_TYPES_PER_PROVIDER: "maxServiceTypesPerProvider",
  MYST_OUTAGE_TOLERANCE_MS: "outageToleranceMs",
  MYST_IP_CHECK_URL: "ipCheckUrl",
  MYST_STUN_SERVERS: "stunServers",
  MYST_COUNTRY: "country",
  MYST_PORT_MAPPING: "portMapping",
  MYST_NAT_PORT: "natPort",
  MYST_WIREGUARD_SPARE: "wireguardSpare",
  MYST_KILL_SWITCH_SPARE: "killSwitchSpare",
  MYST_OPENVPN_SPARE: "openvpnSpare",
  ...QUALITY_ENV,
};

/** Builds and validates the configuration; every error names the setting and where it came from. */
export function loadConfig(flags: ConfigFlags = {}, env: NodeJS.ProcessEnv = process.env): MystConfig {
  const { raw, from } = gatherSettings(flags, env);
  const config = defaultConfig();
  const bad: Bad = (key, why) => {
    throw new ConfigError(`setting ${key} (from ${from[key]}) ${why}`);
  };
  for (const key of Object.keys(raw) as (keyof MystConfig)[]) {
    const value = raw[key];
    // Each setting is in exactly one group; a key in none (none today) is left at its default.
    if (!applyPlace(config, key, value, bad) && !applyNumber(config, key, value, bad)) applyChoice(config, key, value, bad, from);
  }
  const credentials = readBrokerCredentials(config, bad);
  if (credentials) config.brokerCredentials = credentials;
  return config;
}

type Bad = (key: keyof MystConfig, why: string) => never;

/** Every setting given, by precedence (config file, then environment, then flags), with where each came from. */
function gatherSettings(flags: ConfigFlags, env: NodeJS.ProcessEnv): { raw: Raw; from: Source } {
  const raw: Raw = {};
  const from: Source = {};
  const set = (key: keyof MystConfig, value: unknown, source: string) => {
    if (value === undefined) return;
    raw[key] = value;
    from[key] = source;
  };
  const fromEnv = envSettings(env);
  const dataDir = flags.dataDir ?? (fromEnv.dataDir as string | undefined) ?? defaultConfig().dataDir;
  const file = flags.config ?? path.join(dataDir, "config.json");
  const fileRaw = readConfigFile(file, flags.config !== undefined);
  for (const [key, value] of Object.entries(fileRaw)) {
    if (!(key in defaultConfig()) || key === "brokerCredentials") throw new ConfigError(`config file ${file}: unknown setting "${key}"`);
    set(key as keyof MystConfig, value, `config file ${file}`);
  }
  for (const [name, key] of Object.entries(ENV)) set(key, fromEnv[key], name);
  setFlags(flags, set);
  return { raw, from };
}

/** The settings the environment gives (an empty variable counts as unset); the list ones split at commas. */
function envSettings(env: NodeJS.ProcessEnv): Raw {
  const fromEnv: Raw = {};
  for (const [name, key] of Object.entries(ENV)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    fromEnv[key] = key === "brokerUrls" || key === "discoveryUrls" || key === "stunServers" ? value.split(",").map((s) => s.trim()) : value;
  }
  return fromEnv;
}

function setFlags(flags: ConfigFlags, set: (key: keyof MystConfig, value: unknown, source: string) => void): void {
  set("dataDir", flags.dataDir, "--data-dir");
  set("rpcUrl", flags.rpcUrl, "--rpc-url");
  set("deploymentFile", flags.deployment, "--deployment");
  set("brokerUrls", flags.brokerUrl?.length ? flags.brokerUrl : undefined, "--broker-url");
  set("brokerUser", flags.brokerUser, "--broker-user");
  set("brokerPasswordFile", flags.brokerPasswordFile, "--broker-password-file");
  set("brokerTokenFile", flags.brokerTokenFile, "--broker-token-file");
  set("brokerNkeyFile", flags.brokerNkeyFile, "--broker-nkey-file");
  set("brokerCredsFile", flags.brokerCredsFile, "--broker-creds-file");
  set("discoveryUrls", flags.discoveryUrl?.length ? flags.discoveryUrl : undefined, "--discovery-url");
  set("logLevel", flags.logLevel, "--log-level");
  set("logFormat", flags.logFormat, "--log-format");
  set("apiHost", flags.apiHost, "--api-host");
  set("apiPort", flags.apiPort, "--api-port");
  set("lightKdf", flags.lightKdf ? true : undefined, "--light-kdf");
}

/** Where the node keeps and finds things: paths, URLs, the broker's user and credential files. False for a setting of another group. */
function applyPlace(config: MystConfig, key: keyof MystConfig, value: unknown, bad: Bad): boolean {
  switch (key) {
    case "dataDir":
    case "deploymentFile":
      if (typeof value !== "string" || value === "") bad(key, "must be a path");
      config[key] = path.resolve(value as string);
      return true;
    case "rpcUrl":
      config.rpcUrl = url(value, ["http:", "https:"]) ?? bad(key, "must be an http(s) URL");
      return true;
    case "discoveryUrls": {
      const list = Array.isArray(value) ? value : bad(key, "must be a list of http(s) URLs");
      if (list.length === 0) bad(key, "must name at least one discovery replica");
      config.discoveryUrls = list.map((u) => url(u, ["http:", "https:"]) ?? bad(key, `has "${u}", not an http(s) URL`));
      return true;
    }
    case "tunnelCheckName":
    case "tunnelCheckUrl":
    case "proberConfined":
      parseQualitySetting(config, key, value, bad);
      return true;
    case "ipCheckUrl":
      config.ipCheckUrl = value === "" ? undefined : (url(value, ["http:", "https:"]) ?? bad(key, "must be an http(s) URL"));
      return true;
    case "brokerUrls": {
      const list = Array.isArray(value) ? value : bad(key, "must be a list of nats:// URLs");
      if (list.length === 0) bad(key, "must name at least one broker");
      config.brokerUrls = list.map((u) => url(u, ["nats:", "tls:", "ws:", "wss:"]) ?? bad(key, `has "${u}", not a nats:// URL`));
      return true;
    }
    case "brokerUser":
      if (typeof value !== "string" || value === "") bad(key, "must be a user name");
      config.brokerUser = value as string;
      return true;
    case "brokerPasswordFile":
    case "brokerTokenFile":
    case "brokerNkeyFile":
    case "brokerCredsFile":
      if (typeof value !== "string" || value === "") bad(key, "must be a path to a file");
      config[key] = path.resolve(value as string);
      return true;
    default:
      return false;
  }
}

/** Ports, timeouts and limits. False for a setting of another group. */
function applyNumber(config: MystConfig, key: keyof MystConfig, value: unknown, bad: Bad): boolean {
  const n = Number(value);
  switch (key) {
    case "apiPort":
    case "natPort":
      if (!Number.isInteger(n) || n < 0 || n > 65535) bad(key, "must be a port number (0 picks a free one)");
      config[key] = n;
      return true;
    case "registrationTimeoutMs":
    case "outageToleranceMs":
      if (!Number.isSafeInteger(n) || n <= 0) bad(key, "must be a positive number of milliseconds");
      config[key] = n;
      return true;
    case "maxDialogsPerPeer":
    case "maxSessionsPerConsumer":
    case "maxServiceTypesPerProvider":
      if (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000) bad(key, "must be a whole number from 1 to 1,000,000");
      config[key] = n;
      return true;
    default:
      return false;
  }
}

/** Logging, the API's address, switches, STUN servers, the country and the payment policy. */
function applyChoice(config: MystConfig, key: keyof MystConfig, value: unknown, bad: Bad, from: Source): void {
  switch (key) {
    case "logLevel":
      if (!LOG_LEVELS.includes(value as LogLevel)) bad(key, `must be one of ${LOG_LEVELS.join(", ")}`);
      config.logLevel = value as LogLevel;
      break;
    case "logFormat":
      if (!LOG_FORMATS.includes(value as LogFormat)) bad(key, `must be one of ${LOG_FORMATS.join(", ")}`);
      config.logFormat = value as LogFormat;
      break;
    case "apiHost":
      if (typeof value !== "string" || !isIP(value)) bad(key, "must be an IP address (e.g. 127.0.0.1)");
      config.apiHost = value as string;
      break;
    case "lightKdf":
    case "portMapping":
    case "wireguardSpare":
    case "killSwitchSpare":
    case "openvpnSpare":
      config[key] = bool(value) ?? bad(key, "must be true or false");
      break;
    case "stunServers": {
      const list = Array.isArray(value) ? value : bad(key, "must be a list of host:port");
      config.stunServers = list.map((s) => (typeof s === "string" && STUN_SERVER.test(s) ? s : bad(key, `has "${s}", not a host:port`)));
      break;
    }
    case "country":
      config.country = countryCode(value) ?? bad(key, "must be a two-letter country code (ISO 3166-1 alpha-2)");
      break;
    case "paymentPolicy": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) bad(key, "must be an object of payment settings");
      const unknown = Object.keys(value as object).filter((k) => !PAYMENT_POLICY_KEYS.includes(k as never));
      if (unknown.length) bad(key, `has unknown settings: ${unknown.join(", ")}`);
      config.paymentPolicy = parsePaymentPolicy(value as PaymentPolicySettings, undefined, {
        name: (k) => `setting paymentPolicy.${k} (from ${from[key]})`,
        code: "CONFIG_INVALID",
      });
      break;
    }
  }
}

/** A STUN server: a host name or IPv4 address, or an IPv6 one in brackets, and an optional port (1-65535). */
const STUN_SERVER = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}))?$/;

function readConfigFile(file: string, required: boolean): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new ConfigError(`cannot read config file ${file}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON`, { cause: err });
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new ConfigError(`config file ${file} must hold a JSON object`);
  return data as Record<string, unknown>;
}

function url(value: unknown, protocols: string[]): string | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const u = new URL(value);
    return protocols.includes(u.protocol) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A two-letter country code, upper-cased. */
function countryCode(value: unknown): string | undefined {
  return typeof value === "string" && /^[A-Za-z]{2}$/.test(value) ? value.toUpperCase() : undefined;
}

function bool(value: unknown): boolean | undefined {
  if (typeof value === "boolean") return value;
  if (value === "1" || value === "true") return true;
  if (value === "0" || value === "false") return false;
  return undefined;
}
