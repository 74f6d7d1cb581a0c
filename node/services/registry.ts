/**
 * Every service type this node sells and buys: one line each, in the order help texts list them.
 * A new tunnel type is its own folder under services/ (a `TunnelType`, services/tunnel-type.ts)
 * plus its line here; the API's schemas, services.json, the CLI's choices and flags, the
 * dashboard's choices and the adapter suite all take their lists from this file (catalog.ts).
 */
export { openvpn } from "./openvpn/tunnel";
export { wireguard } from "./wireguard/tunnel";
export { proxy } from "./proxy/tunnel";
export { noop } from "./noop/tunnel";
export { relay } from "./relay/tunnel";
