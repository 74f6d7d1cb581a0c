import { defineTunnel } from "../tunnel-type";
import { NoopConsumerService, NoopProviderService } from "./noop";

/** A service that provides nothing (services/noop): tests and protocol probes. It takes no settings. */
export const noop = defineTunnel({
  type: "noop",
  network: false,
  // Measured: its provider runs as any user with no capability at all.
  capabilities: () => [],
  startProvider: async () => new NoopProviderService(),
  consumer: () => new NoopConsumerService(),
});
