/**
 * Every error code the node produces, in one table: the module (folder under node/) that raises it,
 * the HTTP status the node's API answers it with, and what it means in one line. `MystError`'s code
 * is a key of this table, so a code that is not here does not compile; the API's status mapping
 * (`apiStatusOf`), discovery's (`discoveryStatusOf`) and the list in docs/api.md (`npm run errors`)
 * are made from it. A new error code is one line here. (nats.js keeps its codes in one errors.ts.)
 *
 * A peer's code is never a key here by being a peer's: it travels as data (`PeerError.peerCode`,
 * `SessionRefusedError.refusal`, a discovery replica's answer outside `DISCOVERY_ANSWERS`).
 * `refusal` marks the codes this node, as a provider, sends a consumer in the session protocol.
 */
export interface ErrorEntry {
  /** The folder under node/ that raises it (the first, when several do). */
  readonly module: ErrorModule;
  /** The node API's HTTP status for it; 422 (the request was understood but could not be done) unless it says otherwise. */
  readonly status: number;
  /** A discovery replica's HTTP status for it, when a replica answers with it. */
  readonly discovery?: number;
  /** One of the reasons a provider refuses a session with (`session.create`'s `refused`). */
  readonly refusal?: true;
  /** What it means, in one line. */
  readonly meaning: string;
}

export type ErrorModule =
  | "api"
  | "broker"
  | "chain"
  | "cli"
  | "config"
  | "consumer-protection"
  | "daemon"
  | "dialog"
  | "discovery"
  | "errors"
  | "http"
  | "identity"
  | "nat"
  | "payments"
  | "proposal"
  | "quality"
  | "services"
  | "services/controls"
  | "services/openvpn"
  | "services/wireguard"
  | "services/relay"
  | "session"
  | "store"
  | "values";

const e = (module: ErrorModule, status: number, meaning: string) => ({ module, status, meaning });
/** A code of discovery's HTTP API: its status there, and 422 should the node's own API ever carry it. */
const d = (discovery: number, meaning: string, status = 422) => ({ module: "discovery" as const, status, discovery, meaning });
/** A refusal a provider sends in the session protocol (the consumer's API says SESSION_REFUSED, with it in `refusal`). */
const r = (meaning: string) => ({ module: "session" as const, status: 422, refusal: true as const, meaning });
/** A system program is missing. */
const missing = (program: string) => e("services", 422, `${program} is not installed (scripts/install.sh installs it)`);

export const ERRORS = {
  // http: what the HTTP plumbing answers before or around a route (node API and discovery alike)
  BAD_REQUEST: {
    ...e("http", 400, "the request does not match its schema (the message names the field), or asks for something contradictory"),
    discovery: 400,
    refusal: true,
  },
  BAD_JSON: e("http", 400, "the body is not JSON, or is empty"),
  BAD_HOST: e("http", 421, "the Host header is not one the server answers to (a DNS-rebinding page sends its own name)"),
  BODY_TOO_LARGE: e("http", 413, "the body is larger than the server takes"),
  UNSUPPORTED_MEDIA_TYPE: e("http", 415, "the body is not application/json"),
  URI_TOO_LONG: e("http", 414, "a path parameter is too long"),
  HEADERS_TOO_LARGE: e("http", 431, "the request line and headers are too large"),
  NOT_FOUND: { ...e("http", 404, "no such route, or (discovery) no live proposal of that provider and service type"), discovery: 404 },
  INTERNAL: e("http", 500, "a bug: logged with its stack, the answer carries no details"),

  // api: the node's REST API, its token and the dashboard's login
  UNAUTHORIZED: e("api", 401, "no API token, or a wrong one"),
  LOGIN_LINK_INVALID: e("api", 401, "a dashboard login link used already or expired"),
  BAD_ORIGIN: e("api", 403, "a request from another origin, or a change made with the dashboard's cookie without the page's Origin"),
  DASHBOARD_NOT_BUILT: e("api", 503, "the dashboard's files are not built (npm run build)"),
  API_TOKEN_MISSING: e("api", 422, "a node runs for the data dir but its api-token file is missing"),
  API_TOKEN_UNREADABLE: e("api", 422, "the api-token file cannot be read"),
  API_TOKEN_UNWRITABLE: e("api", 422, "the api-token file cannot be written"),
  API_TOKEN_INVALID: e("api", 422, "the api-token file does not hold a token"),
  API_PORT_IN_USE: e("api", 422, "the API's host:port is in use (--api-port)"),
  API_HOST_UNAVAILABLE: e("api", 422, "the API's host is not an address of this machine (--api-host)"),
  DAEMON_RUNNING: e("api", 422, "a node already runs for this data dir"),
  DAEMON_UNREACHABLE: e("api", 422, "the node named in daemon.json does not answer"),
  DAEMON_BAD_RESPONSE: e("api", 422, "the node answered with something that is not its API's JSON, or with a code this version does not know"),
  IDENTITY_AMBIGUOUS: e("api", 422, "several identities in the keystore and none named (--identity)"),

  // cli: the myst command's own checks
  BAD_FLAG: e("cli", 422, "a command-line flag has a value it cannot take"),
  DAEMON_NOT_RUNNING: e("cli", 422, "the command needs a running node (myst daemon)"),
  DASHBOARD_UNAVAILABLE: e("cli", 422, "a foreground node serves no dashboard (it listens on a unix socket only)"),
  EXPORT_FAILED: e("cli", 422, "the exported keystore file cannot be written (or exists already)"),
  NOT_CONFINED: e("cli", 422, "myst run: the node answered without a confined namespace"),
  RELAYER_KEY_UNREADABLE: e("cli", 422, "the relayer key file cannot be read"),
  RUN_FAILED: e("cli", 422, "myst run: the command could not be started"),

  // config
  CONFIG_INVALID: e("config", 422, "a setting is invalid (the message names it and where it came from)"),
  PASSPHRASE_MISSING: e("config", 422, "a passphrase is needed and none was given"),
  PASSPHRASE_FILE_UNREADABLE: e("config", 422, "the passphrase file cannot be read"),

  // values
  INVALID_ADDRESS: e("values", 400, "not an address (0x + 40 hex)"),
  BAD_AMOUNT: e("values", 400, "not an amount of MYST (e.g. 0.05), or an amount the vault cannot take"),

  // identity
  IDENTITY_EXISTS: e("identity", 409, "the identity is in the keystore already"),
  IDENTITY_NOT_FOUND: e("identity", 404, "no such identity in the keystore"),
  KEYSTORE_CORRUPT: e("identity", 422, "a keystore file is not a keystore v3 file (corrupt or truncated)"),
  KEYSTORE_FILE_UNREADABLE: e("identity", 422, "a keystore file cannot be read"),
  KEYSTORE_UNREADABLE: e("identity", 422, "the keystore directory cannot be read"),
  PASSPHRASE_EMPTY: e("identity", 400, "the passphrase is empty"),
  WRONG_PASSPHRASE: e("identity", 403, "the passphrase does not open the keystore file"),
  INVALID_KEY: e("identity", 422, "not a secp256k1 key"),
  INVALID_SIGNATURE: e("identity", 422, "not a valid signature, or not by the key it should be by"),

  // daemon: the node's operations
  NODE_OFFLINE: e("daemon", 409, "only a running node does this (myst daemon, or a foreground connect / service start)"),
  NO_IDENTITY: e("daemon", 404, "no identity in the keystore (myst identities new)"),
  PASSPHRASE_REQUIRED: e("daemon", 400, "this needs the identity's passphrase"),
  RELAYER_KEY_INVALID: e("daemon", 400, "the relayer key is not a 32-byte hex private key"),
  EXIT_PENDING: e("daemon", 409, "a vault exit is already pending"),
  EXIT_NOT_REQUESTED: e("daemon", 409, "a vault withdrawal needs an exit requested first"),
  IP_CHECK_UNCONFIGURED: e("daemon", 409, "no IP check service is configured (ipCheckUrl)"),
  IP_CHECK_FAILED: e("daemon", 502, "the IP check service did not answer with an address"),
  SERVICES_FILE_UNREADABLE: e("daemon", 422, "services.json cannot be read"),
  SERVICES_FILE_CORRUPT: e("daemon", 422, "services.json is not a JSON list of services"),

  // store
  STORE_FULL: e("store", 507, "the disk under the data dir is full"),
  STORE_READ_ONLY: e("store", 507, "the data dir cannot be written (read-only file system, or permissions)"),
  STORE_FAILED: e("store", 503, "the disk reported an I/O error, or the database is damaged"),
  DATA_DIR_UNUSABLE: e("store", 422, "the data dir cannot be made or opened"),

  // chain
  CHAIN_ERROR: e("chain", 502, "the chain's node answered a call with an error"),
  CHAIN_MISMATCH: e("chain", 422, "the RPC serves another chain than the deployment file names"),
  CHAIN_UNREACHABLE: e("chain", 502, "the chain's RPC does not answer"),
  INSUFFICIENT_FUNDS: e("chain", 422, "the sending account has too little ETH for gas (named)"),
  NO_CONTRACT: e("chain", 422, "no contract code at an address the deployment file names"),
  NONCE_CONFLICT: e("chain", 422, "the account's nonce moved under a transaction"),
  TX_REVERTED: e("chain", 422, "a transaction reverted (the decoded custom error in the message)"),
  DEPLOYMENT_FILE_INVALID: e("chain", 422, "the deployment file is missing or malformed"),

  // broker
  BROKER_CLOSED: e("broker", 503, "the broker connection is not open"),
  BROKER_CONFIG: e("broker", 422, "no broker URL, or a broker setting that cannot work"),
  BROKER_ERROR: e("broker", 422, "the broker failed a request"),
  BROKER_UNAVAILABLE: e("broker", 422, "no NATS server answered"),
  BROKER_UNAUTHORIZED: e("broker", 422, "the broker refused the node's credential"),
  BROKER_PERMISSION: e("broker", 422, "logged: the broker refused this connection a subject (a permissions violation)"),
  INVALID_SUBJECT: e("broker", 422, "not a valid NATS subject"),
  NO_RESPONDERS: e("broker", 502, "nobody listens on the subject (the peer is not online)"),
  REQUEST_TIMEOUT: e("broker", 504, "no answer on the subject in time"),

  // dialog
  BAD_RESPONSE: e("dialog", 422, "the peer's answer was dropped or does not answer the request"),
  DIALOG_CLOSED: e("dialog", 422, "the dialog with the peer is closed"),
  DIALOG_TIMEOUT: e("dialog", 504, "the peer did not answer in time"),
  PEER_ERROR: e("dialog", 502, "the peer answered with an error: its code is the peer's (in the message), not ours"),
  PEER_UNREGISTERED: e("dialog", 422, "the peer is not a registered identity"),
  SENDER_UNREGISTERED: e("dialog", 422, "sent to a peer in clear text: the sender is not a registered identity"),
  UNKNOWN_TYPE: e("dialog", 422, "sent to a peer: no handler for the message type"),
  BAD_RECIPIENT_KEY: e("dialog", 422, "the recipient's registered public key is not a curve point"),
  UNDECRYPTABLE: e("dialog", 422, "an envelope that cannot be decrypted"),

  // proposal
  BAD_FILTER: { ...e("proposal", 400, "a proposal filter is invalid (the message names it)"), discovery: 400 },
  BAD_SIGNATURE: d(401, "the proposal (or unregister) is not signed by its provider"),
  PROPOSAL_EXPIRED: d(422, "the proposal has expired"),
  PROPOSAL_FROM_FUTURE: d(422, "the proposal was made in the future (clock skew?)"),
  PROPOSAL_MALFORMED: d(400, "the proposal does not match its schema"),
  PROPOSAL_NOT_OURS: e("proposal", 422, "the proposal names another provider than the signing key"),
  PROVIDER_UNREGISTERED: d(403, "the proposal's provider is not a registered identity"),
  UNREGISTER_MALFORMED: e("proposal", 422, "an unregister message does not match its schema"),

  // discovery
  DISCOVERY_UNREACHABLE: e("discovery", 502, "no discovery replica could be reached"),
  DISCOVERY_BAD_RESPONSE: e("discovery", 502, "discovery answered with something it should not (not JSON, an unknown code, a proposal not asked for)"),
  DISCOVERY_CONFIG: e("discovery", 422, "no discovery URL given"),
  DISCOVERY_BUSY: d(503, "the replica is verifying as many announcements as it takes; retry later"),
  NOT_READY: d(503, "the replica is still loading the index; ask another or retry"),
  INDEX_FULL: d(503, "the index is full"),
  PROPOSAL_STALE: d(409, "a newer proposal of that provider and service type was seen"),
  PROPOSAL_WITHDRAWN: d(409, "the provider withdrew that proposal; announce a newer one"),
  PROVIDER_LIMIT: d(429, "the provider has as many service types in the index as it may"),
  STORE_UNAVAILABLE: d(503, "the proposal store (JetStream) is not reachable"),
  STORE_CONFLICT: d(503, "the proposal changed in the store too often while it was written; announce again"),
  STORE_CONFIG: e("discovery", 422, "the proposal store's bucket cannot be made as configured"),
  RECORD_MALFORMED: e("discovery", 422, "a stored record is not in the record format"),
  RECORD_REJECTED: e("discovery", 422, "a stored record fails the checks an announcement must pass"),
  VERIFIER_FAILED: e("discovery", 422, "the signature worker threads failed"),
  REPLICA_KEY_UNUSABLE: e("discovery", 422, "the replicas' shared key file is too short, or cannot be read or written"),

  // quality (receipts)
  RECEIPT_MALFORMED: { ...e("quality", 400, "a session receipt is not in its canonical form, or a field is out of range"), discovery: 400 },
  RECEIPT_TOO_LARGE: { ...e("quality", 413, "a session receipt is larger than 1 KiB"), discovery: 413 },
  RECEIPT_BAD_SIGNATURE: { ...e("quality", 401, "a session receipt is not signed by its consumer"), discovery: 401 },
  RECEIPT_UNREGISTERED: { ...e("quality", 403, "a session receipt's consumer is not a registered identity"), discovery: 403 },
  RECEIPT_STALE: { ...e("quality", 422, "a session receipt was signed in the future or before the store's retention"), discovery: 422 },
  RECEIPT_FLOOD: d(429, "the receipt's consumer sent more receipts this hour than a replica takes from one signer"),
  QUALITY_READ_LIMITED: d(
    429,
    "a client address asked a replica for more quality reports than it answers one address a minute, or too many are being read at once; retry after Retry-After seconds",
  ),
  PROBE_ROUND_RUNNING: e("quality", 409, "a round of probes is already running on this node"),

  // session
  ALREADY_CONNECTED: e("session", 409, "the node is connected already"),
  ALREADY_CONNECTING: e("session", 409, "a connection is being set up (or reconnecting)"),
  NOT_CONNECTED: e("session", 409, "the node is not connected"),
  NO_CONTACT: e("session", 422, "the proposal names no way to reach the provider (nats/v1)"),
  CANDIDATES_FAILED: e("session", 502, "a connect by filters tried several providers and none worked (each is named with its failing stage)"),
  STAGE_FAILED: e("session", 502, "the tunnel came up but a check after it failed (DNS, first byte, throughput)"),
  NO_PROPOSAL: e("session", 404, "the provider has no live proposal of that service type in discovery"),
  PROVIDER_UNREACHABLE: e(
    "session",
    422,
    "the proposal's tunnel (OpenVPN) needs a provider with a public address or a port its router maps, and this provider can be reached only by hole punching (why, in words)",
  ),
  RATE_LIMITED: e("session", 429, "a peer sent a message more often than the protocol needs (session.relay: a few relay moves per session, then one per 20 s)"),
  SERVICE_EXISTS: e("session", 409, "a service of that type is running already"),
  SERVICE_MISMATCH: e("session", 422, "the proposal is for another service type than asked"),
  SERVICE_UNKNOWN: e("session", 404, "no service of that type is running"),
  SESSION_ENDED: e("session", 422, "the session is over"),
  SESSION_REFUSED: e("session", 422, "the provider refused the session: its reason (a refusal below) in the message and in lastFailure.refusal"),
  SESSION_STATE: e("session", 422, "the session is not in the state the message needs"),
  SESSION_UNKNOWN: e("session", 422, "no such session for this peer"),
  TUNNEL_FAILED: e("session", 422, "the tunnel did not come up (the cause in the message)"),
  NO_DIRECT_PATH: e(
    "nat",
    502,
    "the provider can be reached only directly and no direct path exists (why, in words: e.g. both sides map ports per destination: needs a relay)",
  ),
  CHANNEL_CLOSED: e("nat", 409, "the direct channel was already used or closed"),
  NO_RELAY: e(
    "session",
    502,
    "no direct path to the provider, and no relay joined the pair (none meets the price limit, or none could allocate); the message says why",
  ),

  // session: the refusals a provider sends (session.create → refused)
  PROPOSAL_UNKNOWN: r("the provider has no such proposal"),
  PROPOSAL_CHANGED: r("the provider's proposal changed since the consumer read it"),
  CONSUMER_UNREGISTERED: r("the consumer is not a registered identity (a provider says SENDER_UNREGISTERED in clear text)"),
  CAPACITY_REACHED: r("the service takes no more sessions"),
  TOO_MANY_SESSIONS: r("the node takes no more sessions (max sessions)"),
  PRICE_NOT_ACCEPTED: r("the consumer's price does not match the provider's"),
  PAYMENT_NOT_COVERED: r("the consumer's vault cannot cover the session (balance or escrow too low)"),
  SERVICE_FAILED: r("the service failed to set the session up"),
  REGISTRY_UNAVAILABLE: r(
    "the provider could not check what the consumer sent (a signed proposal) against the identity registry, which did not answer: nothing is wrong with the request, try again",
  ),
  TRAFFIC_CAP: r("the provider's daily or monthly traffic cap is reached"),
  ACCESS_DENIED: r("the provider's allow or deny list keeps this consumer out"),
  OUTSIDE_SCHEDULE: r("outside the service's schedule"),

  // payments
  BAD_PRICE: e("payments", 422, "a negative price"),
  BAD_USAGE: e("payments", 422, "negative usage"),
  PROMISE_ABOVE_BALANCE: e("payments", 422, "a promise above what the consumer's vault can pay"),
  PROMISE_MALFORMED: e("payments", 422, "a payment promise that does not match its schema"),
  PROMISE_NOT_INCREASING: e("payments", 422, "a promise below the last one"),
  PROMISE_WRONG_SIGNER: e("payments", 422, "a promise not signed by the session's consumer"),

  // consumer-protection
  BAD_DNS: e("consumer-protection", 422, "not resolver addresses"),
  BAD_NETNS: e("consumer-protection", 400, "not a network namespace of this machine"),
  BAD_RECORD: e("consumer-protection", 422, "the record of what protection changed is unreadable"),
  CONTROL_ENDPOINT: e("consumer-protection", 422, "a control endpoint (chain, broker, discovery URL) cannot be resolved to addresses to keep open"),
  FIREWALL_FAILED: e("consumer-protection", 422, "the kill switch's rules could not be installed or removed"),
  NOT_ENGAGED: e("consumer-protection", 422, "protection was not engaged before the tunnel came up"),
  NO_KILL_SWITCH: e("consumer-protection", 422, "reconnecting needs the kill switch"),

  // services: what every tunnel adapter shares
  ADDRESS_POOL_EXHAUSTED: e("services", 422, "every tunnel address is in use"),
  AUTH_REFUSED: e("services", 422, "the provider refused the session's tunnel credentials"),
  BAD_CONSUMER_DATA: e("services", 422, "the session request lacks what the tunnel type needs from the consumer"),
  BAD_SERVICE_CONFIG: e("services", 422, "the provider's service config is malformed"),
  BAD_SERVICE_SETTINGS: e("services", 400, "a service's settings are invalid (the message names the setting)"),
  CAPABILITY_MISSING: e("services", 422, "the node lacks a Linux capability a service or tunnel needs (the message names it, what for and how to grant it)"),
  BAD_SESSION_ID: e("services", 422, "the provider's session id is not 32 hex characters"),
  COMMAND_FAILED: e("services", 422, "a system command failed (its last line of output in the message)"),
  DEVICE_IN_USE: e("services", 422, "the tunnel interface name is in use"),
  ENDPOINT_NOT_IP: e("services", 422, "the provider's endpoint is not an IP address"),
  HANDSHAKE_TIMEOUT: e("services", 422, "the tunnel did not come up in time"),
  KEY_IN_USE: e("services", 422, "the tunnel key belongs to a live session"),
  NO_UPLINK: e("services", 422, "no default route to send consumer traffic out of (--uplink)"),
  PORT_IN_USE: e("services", 422, "the tunnel's port is in use"),
  RESOLVER_FAILED: e("services", 422, "the tunnel's resolver (dnsmasq) did not start"),
  RESOLVER_OUTSIDE_TUNNEL: e(
    "services",
    422,
    "the provider names as its resolver an address its tunnel's own packets go to (its endpoint), reached outside the tunnel: lookups would leave in clear text, so the session is refused",
  ),
  SERVICE_NOT_RUNNING: { ...e("services", 422, "the service is not running"), refusal: true },
  SERVICE_TYPE_UNKNOWN: e("services", 400, "not a service type this node knows"),
  TUN_BUSY: e("services", 422, "the tun device is busy"),
  BASH_NOT_INSTALLED: missing("bash"),
  DNSMASQ_NOT_INSTALLED: missing("dnsmasq"),
  IP_NOT_INSTALLED: missing("ip (iproute2)"),
  IP6TABLES_NOT_INSTALLED: missing("ip6tables"),
  IPTABLES_NOT_INSTALLED: missing("iptables"),
  NFT_NOT_INSTALLED: missing("nft (nftables)"),
  NSENTER_NOT_INSTALLED: missing("nsenter (util-linux)"),
  OPENSSL_NOT_INSTALLED: missing("openssl"),
  OPENVPN_NOT_INSTALLED: missing("openvpn"),
  PERL_NOT_INSTALLED: missing("perl"),
  PYTHON3_NOT_INSTALLED: missing("python3"),
  SETPRIV_NOT_INSTALLED: missing("setpriv (util-linux)"),
  SH_NOT_INSTALLED: missing("sh"),
  SYSCTL_NOT_INSTALLED: missing("sysctl (procps)"),
  TC_NOT_INSTALLED: missing("tc (iproute2)"),
  WIREGUARD_GO_NOT_INSTALLED: missing("wireguard-go"),
  TURNSERVER_NOT_INSTALLED: missing("turnserver (Debian's coturn)"),
  CONNTRACK_NOT_INSTALLED: missing("conntrack (conntrack-tools)"),

  // nat: how this node is reached
  STUN_MALFORMED: e("nat", 422, "a STUN message (or a STUN server's host:port) that is not well formed"),
  STUN_TIMEOUT: e("nat", 422, "the STUN server did not answer"),
  STUN_ERROR_RESPONSE: e("nat", 422, "the STUN server answered with an error"),
  STUN_ABORTED: e("nat", 422, "the STUN request was cancelled"),
  STUN_SEND_FAILED: e("nat", 422, "a STUN request could not be sent"),
  PORT_MAPPING_NO_GATEWAY: e("nat", 422, "no IPv4 gateway to ask for a port mapping"),
  PORT_MAPPING_UNAVAILABLE: e("nat", 422, "the router mapped no port (PCP, NAT-PMP and UPnP all failed), or the mapper is stopped"),

  // services/controls
  BAD_SCHEDULE: e("services/controls", 400, "a schedule that cannot be read (days and time windows)"),
  BAD_ACCESS_LIST: e("services/controls", 400, "an access list line that is not an identity address"),
  ACCESS_LIST_UNREADABLE: e("services/controls", 400, "the access list file cannot be read"),
  BAD_EGRESS_POLICY: e("services/controls", 400, "a blocked port that is not a port or a range"),
  BAD_TRAFFIC_CAP: e("services/controls", 400, "a traffic cap that is not a positive number of GiB"),
  SHAPING_FAILED: e("services/controls", 422, "bandwidth limits could not be set up"),

  // services/openvpn
  OPENVPN_FAILED: e("services/openvpn", 422, "openvpn exited or failed (its last log line in the message)"),
  MANAGEMENT_CLOSED: e("services/openvpn", 422, "openvpn closed its management interface during a command"),
  MANAGEMENT_COMMAND_FAILED: e("services/openvpn", 422, "openvpn refused a management command"),
  MANAGEMENT_UNREACHABLE: e("services/openvpn", 422, "openvpn's management socket did not open"),

  // services/wireguard
  WIREGUARD_FAILED: e("services/wireguard", 422, "wireguard-go exited or failed, or its interface name could not be claimed"),
  UAPI_FAILED: e("services/wireguard", 422, "wireguard-go's control socket refused a command or answered something malformed"),
  RELAY_FAILED: e("services/relay", 502, "the relay (coturn) did not start, or no allocation could be made on it"),
  TURN_ERROR_RESPONSE: e("services/relay", 502, "the relay's TURN server answered a request with an error (401: the credential is wrong or expired)"),
  TURN_TIMEOUT: e("services/relay", 504, "the relay's TURN server did not answer"),
  TURN_CLOSED: e("services/relay", 502, "the relay allocation is closed (the relay went away, or the session ended)"),
} as const satisfies Record<string, ErrorEntry>;

/** A code of ours: a key of the catalogue. */
export type ErrorCode = keyof typeof ERRORS;

/** Whether `code` is one of ours. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERRORS, code);
}

/** The node API's HTTP status for a code of ours (undefined for anything else). */
export function apiStatusOf(code: string): number | undefined {
  return isErrorCode(code) ? ERRORS[code].status : undefined;
}

/** A discovery replica's HTTP status for a code (undefined when a replica does not answer with it: 422). */
export function discoveryStatusOf(code: string): number | undefined {
  if (!isErrorCode(code)) return undefined;
  const entry: ErrorEntry = ERRORS[code];
  return entry.discovery;
}
