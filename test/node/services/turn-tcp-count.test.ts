import { expect } from "chai";
import net from "node:net";
import { RelayProviderService } from "../../../node/services/relay/provider";
import { RelayGrantService } from "../../../node/services/relay/tcp-grant";
import { TcpRelayedListener } from "../../../node/services/relay/turn-tcp";
import { requirePrerequisites } from "../../../scripts/lib/prereqs";
import { tempDir } from "../../../scripts/lib/tmp";

/**
 * coturn (4.6.1) brings a TCP allocation's counters, which the relay bills by, up to date only when
 * the sum of its packet counts is a multiple of 4,096; each spliced read adds two, so an odd sum is
 * never reported again. Whether it is odd after the bind depends on whether the peer spoke before it
 * (a provider-held allocation's peer is the consumer, whose TLS hello may come before or after; a
 * consumer-held one's is the provider, which speaks only after that hello). Either way one 12 MB
 * transfer must show in coturn's count. Real coturn on loopback.
 */
describe("a held TCP allocation keeps coturn counting, whether the peer speaks before the bind or after", function () {
  this.timeout(60_000);
  const RELAY_IP = "127.0.0.2";
  const dir = tempDir("myst-ttc-r-");
  let relay: RelayProviderService;
  let relayPort: number;
  let n = 0;

  before(async function () {
    requirePrerequisites(this, "relay", process.getuid?.() === 0 ? [] : ["root"]);
    relayPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    relay = new RelayProviderService({ dir: dir.dir, publicIp: RELAY_IP, port: relayPort, minPort: 50500, maxPort: 50599, allowPrivatePeers: true });
    await relay.start();
  });
  after(async () => {
    await relay?.stop();
    dir.cleanup();
  });

  /** A relay session granted and its TCP allocation held over TLS, as a provider holds one (ids from `base`). */
  async function heldAllocation(base: number, o?: { parityFlipMs: { min: number; max: number } }): Promise<{ id: string; listener: TcpRelayedListener }> {
    const id = (base + n++).toString(16).padStart(32, "0");
    const service = new RelayGrantService({ relay: `0x${"cd".repeat(20)}`, server: { address: RELAY_IP }, allowPrivate: true });
    const config = await relay.openSession({ id, consumer: "0xc", consumerData: await service.consumerData() });
    const { grant } = await service.connect({ id, provider: "0xr", serviceConfig: config });
    const listener = await TcpRelayedListener.open(
      { address: RELAY_IP, port: relayPort, transport: "tls", pin: { certificate: grant.certificate!, fingerprint: grant.fingerprint! } },
      { username: grant.username, password: grant.password },
      grant.peers,
      ...(o ? [o] : []),
    );
    return { id, listener };
  }

  /**
   * What coturn counts besides the transfer: the control connection's messages (the ConnectionAttempt,
   * the bind and its answer, one 28-byte Binding indication per parity flip; 656 and 956 bytes
   * measured), and the bytes trickled by caughtUp.
   */
  const CONTROL_BYTES = 4096;
  const CATCH_UP_MS = 10_000;
  /** Spliced reads between two of coturn's reports: the trickle's last bytes may not be counted yet. */
  const REPORT_READS = 2048;
  /** What a count that has caught up with `sent` bytes and the trickle's must reach (trickled bytes cannot stand in for the transfer's). */
  const owed = (sent: number, trickled: number) => sent + Math.max(0, trickled - REPORT_READS);

  /**
   * coturn's count of session `id` once it has caught up with a transfer of `sent` bytes (both ways).
   * coturn adds to the count only at a report, every 2,048 spliced reads while the parity is even, so
   * right after a transfer the count lacks what moved since the last one (measured: 8.21 of 12 MB, 114-130
   * of 134 MB), and nothing while the parity is odd, until the next flip. One byte at a time from the held
   * side to `peer` (each its own spliced read) until the count covers `sent`, for at most CATCH_UP_MS:
   * five of the longest flip intervals, each followed by a report period (2,048 reads, under a second).
   * Returns the count and the bytes the trickle added.
   */
  async function caughtUp(id: string, held: net.Socket, peer: net.Socket, sent: number): Promise<{ counted: number; trickled: number }> {
    const one = Buffer.alloc(1, 9);
    let trickled = 0;
    const counted = async () => {
      await relay.readCounters();
      const u = relay.usage(id)!;
      return u.bytesIn + u.bytesOut;
    };
    for (const until = Date.now() + CATCH_UP_MS; Date.now() < until; ) {
      const now = await counted();
      if (now >= owed(sent, trickled)) return { counted: now, trickled };
      for (let i = 0; i < 512; i++) {
        const arrived = new Promise((r) => peer.once("data", r));
        held.write(one);
        await arrived;
        trickled++;
      }
    }
    return { counted: await counted(), trickled };
  }

  /** coturn's count for one session after 12 MB from the allocation's side to a peer that says 300 bytes before or after the bind. */
  async function countedAfter12MB(peerSpeaksFirst: boolean): Promise<{ counted: number; trickled: number }> {
    const { id, listener } = await heldAllocation(0xa00);
    const peer = net.connect({ host: listener.relayed.address, port: listener.relayed.port });
    try {
      const bound = new Promise<net.Socket>((r) => listener.once("connection", (s) => r(s)));
      let got = 0;
      const all = new Promise<void>((r) =>
        peer.on("data", (d) => {
          got += d.length;
          if (got >= 12_000_000) r();
        }),
      );
      if (peerSpeaksFirst) peer.write(Buffer.alloc(300, 1));
      const held = await bound;
      held.on("data", () => undefined);
      if (!peerSpeaksFirst) peer.write(Buffer.alloc(300, 1));
      const chunk = Buffer.alloc(16_000, 7);
      for (let sent = 0; sent < 12_000_000; sent += chunk.length) if (!held.write(chunk)) await new Promise((r) => held.once("drain", r));
      await all;
      return await caughtUp(id, held, peer, 12_000_000 + 300);
    } finally {
      peer.destroy();
      await listener.close();
      await relay.closeSession(id, "done");
    }
  }

  for (const first of [false, true])
    it(`counts every byte of one 12 MB transfer, and no more, when the peer speaks ${first ? "before" : "only after"} the bind (2 runs)`, async function () {
      for (let run = 1; run <= 2; run++) {
        const { counted, trickled } = await countedAfter12MB(first);
        expect(counted, `run ${run}: every byte of the transfer (and of the trickle but its last report's)`).to.be.at.least(owed(12_000_300, trickled));
        expect(counted, `run ${run}: nothing more than was sent (${trickled} bytes trickled after)`).to.be.at.most(12_000_300 + trickled + CONTROL_BYTES);
      }
    });

  /**
   * A peer that splits its first bytes around the bind: two writes coturn reads apart and holds (the
   * ConnectionAttempt is held back here until both are in, so that the bind comes after them), then the
   * rest after the bind. The two held reads come behind coturn's answer in one read of the holder's, so
   * it takes them for one and guesses the parity wrong; only the random flips (shortened here to
   * 100-200 ms) bring the count back. 128 MB sent over a few seconds, many flips.
   */
  it("counts every byte of a transfer whose peer split its first bytes into two reads before the bind, and no more", async function () {
    const { id, listener } = await heldAllocation(0xb00, { parityFlipMs: { min: 100, max: 200 } });
    // Holds the relay's ConnectionAttempt until released: the listener binds only then.
    let release!: () => void;
    const attempt = new Promise<void>((r) => (release = r));
    const emit = listener.turn.emit.bind(listener.turn) as (event: string, ...args: unknown[]) => boolean;
    let seen!: () => void;
    const announced = new Promise<void>((r) => (seen = r));
    (listener.turn as unknown as { emit: typeof emit }).emit = (event, ...args) => {
      if (event !== "indication") return emit(event, ...args);
      seen();
      void attempt.then(() => emit(event, ...args));
      return true;
    };
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const peer = net.connect({ host: listener.relayed.address, port: listener.relayed.port, noDelay: true });
    const total = 128 * 1024 * 1024;
    try {
      const bound = new Promise<net.Socket>((r) => listener.once("connection", (s) => r(s)));
      let got = 0;
      const all = new Promise<void>((r) =>
        peer.on("data", (d) => {
          got += d.length;
          if (got >= total) r();
        }),
      );
      await new Promise((r) => peer.once("connect", r));
      await announced;
      peer.write(Buffer.alloc(150, 1));
      await pause(100);
      peer.write(Buffer.alloc(150, 2));
      await pause(100);
      release();
      const held = await bound;
      let heard = 0;
      held.on("data", (d) => (heard += d.length)).resume();
      peer.write(Buffer.alloc(300, 3));
      const chunk = Buffer.alloc(1024 * 1024, 7);
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!held.write(chunk)) await new Promise((r) => held.once("drain", r));
        await pause(15);
      }
      await all;
      expect(heard, "the peer's 600 bytes, held ones first").to.equal(600);
      const { counted, trickled } = await caughtUp(id, held, peer, total + 600);
      expect(counted, "every byte of the transfer (and of the trickle but its last report's)").to.be.at.least(owed(total + 600, trickled));
      expect(counted, `nothing more than was sent (${trickled} bytes trickled after)`).to.be.at.most(total + 600 + trickled + CONTROL_BYTES);
    } finally {
      peer.destroy();
      await listener.close();
      await relay.closeSession(id, "done");
    }
  });
});
