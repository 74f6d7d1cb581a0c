import { SignatureWorkers } from "../../node/discovery/signature-workers";
import { startNatsServer, type NatsServer } from "../../scripts/lib/test-network";

/** What the discovery replica suites share: one broker and one pool of signature workers for the suite. */
export interface ReplicaSuite {
  /** The suite's nats-server (set once the suite's `before` has run). */
  readonly nats: NatsServer;
  readonly workers: SignatureWorkers;
  /** What a test starts: stopped after the test, last first. */
  readonly running: { stop(): Promise<void> }[];
  /** A bucket name no other test of the suite uses: `<prefix>-1`, `<prefix>-2`, … */
  bucket(): string;
}

/**
 * Registers, in the calling `describe`, the hooks that start a nats-server and two signature
 * workers before its tests, stop what each test started after it, and stop both at the end.
 */
export function replicaSuite(bucketPrefix: string): ReplicaSuite {
  let nats: NatsServer | undefined;
  let buckets = 0;
  const workers = new SignatureWorkers(2);
  const running: { stop(): Promise<void> }[] = [];
  before(async () => {
    [nats] = await Promise.all([startNatsServer(), workers.start()]);
  });
  after(async () => {
    await workers.stop();
    await nats?.stop();
  });
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) await r.stop();
  });
  return {
    get nats() {
      if (!nats) throw new Error("the suite's nats-server is not started yet (read it inside a hook or a test)");
      return nats;
    },
    workers,
    running,
    bucket: () => `${bucketPrefix}-${++buckets}`,
  };
}
