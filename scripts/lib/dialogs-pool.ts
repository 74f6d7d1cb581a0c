import { Broker } from "../../node/broker/broker";
import { Dialogs } from "../../node/dialog/dialogs";
import type { IdentityKey } from "../../node/identity/key";
import type { TestNetwork } from "./test-network";

/**
 * Dialogs for the identities a test or bench speaks as, each on a broker connection of its own to
 * the network's NATS server, and `stop()` for all of them (the dialogs first, then their brokers).
 */
export class DialogsPool {
  readonly #brokers: Broker[] = [];
  readonly #dialogs: Dialogs[] = [];

  constructor(readonly net: TestNetwork) {}

  dialogsFor = async (key: IdentityKey, subject?: string): Promise<Dialogs> => {
    const broker = new Broker({ servers: [this.net.nats.url] });
    await broker.start();
    this.#brokers.push(broker);
    const dialogs = new Dialogs({ broker, key, directory: this.net.registry, subject });
    await dialogs.start();
    this.#dialogs.push(dialogs);
    return dialogs;
  };

  async stop(): Promise<void> {
    for (const d of this.#dialogs) d.stop();
    await Promise.all(this.#brokers.map((b) => b.stop()));
  }
}
