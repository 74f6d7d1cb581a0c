import { expect } from "chai";
import netModule from "node:net";
import { IdentityKey } from "../../../node/identity/key";
import { type Proposal, signProposal } from "../../../node/proposal/proposal";
import { DestinationPolicy } from "../../../node/services/proxy/destination";
import { ProxyProviderService } from "../../../node/services/proxy/provider";
import { DIAL_BACK_PROOFS_PER_MINUTE, type DialBack, dialBackOf, ProofBudget, proveRelayAt, relayDialBack } from "../../../node/services/relay/tcp-held";
import type { TunnelError } from "../../../node/services/system";
import { makeProposal } from "../../../scripts/lib/proposals";
import { TestNetwork } from "../../../scripts/lib/test-network";
import { tempDir } from "../../../scripts/lib/tmp";

/**
 * A proxy provider dials back only to a relay's allocation (issue 32): the dial-back carries the
 * relay's signed proposal, which must be signed by the relay it names, that relay registered, the
 * proposal unexpired and a relay's, and the address must be one it announces. Otherwise a consumer
 * could make the provider connect to any public host's port before paying. Real registry (Hardhat).
 */
describe("proxy: the dial-back goes only to an address a registered relay announces", function () {
  this.timeout(60_000);
  const net = new TestNetwork();
  const dir = tempDir("myst-dialback-");
  let relayKey: IdentityKey;
  let otherKey: IdentityKey;
  let provider: ProxyProviderService;
  const RELAY_IP = "93.184.216.34";

  /** A proposal of `key`'s (a relay's unless told) whose direct contact announces `addresses`. */
  const announcing = (key: IdentityKey, addresses: string[], overrides: Partial<Proposal> = {}): Proposal => {
    const p = makeProposal(key, { serviceType: "relay" });
    return {
      ...p,
      contacts: [
        ...p.contacts,
        {
          type: "direct/v1",
          nat: { mapping: "none", filtering: "endpoint-independent" },
          candidates: addresses.map((address) => ({ kind: "public" as const, address, port: 443, protocol: "udp" as const })),
        },
      ],
      ...overrides,
    } as Proposal;
  };
  const backTo = (address: string, key = relayKey, proposal = signProposal(key, announcing(key, [RELAY_IP]))): DialBack => ({
    relay: key.address,
    address,
    port: 50123,
    turnPort: 443,
    proposal,
  });
  const check = (back: DialBack) =>
    relayDialBack(back, net.registry).then(
      () => "ok",
      (err: TunnelError) => `${err.code}: ${err.message}`,
    );

  before(async function () {
    await net.start();
    [relayKey, otherKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
    provider = new ProxyProviderService({
      dir: dir.dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      policy: new DestinationPolicy({}),
      directory: net.registry,
      connectTimeoutMs: 1000,
    });
    await provider.start();
  });
  after(async () => {
    await provider?.stop();
    await net.stop();
    dir.cleanup();
  });

  it("takes the address the relay's signed proposal announces", async function () {
    expect(await check(backTo(RELAY_IP))).to.equal("ok");
  });

  it("refuses a public address the relay does not announce, naming it and what is announced (BAD_CONSUMER_DATA)", async function () {
    expect(await check(backTo("198.51.100.7"))).to.equal(
      `BAD_CONSUMER_DATA: the consumer's dial-back address 198.51.100.7 is not one relay ${relayKey.address} announces (${RELAY_IP})`,
    );
  });

  it("refuses a forged, unregistered, expired or non-relay proposal, and one of another relay than the dial-back names", async function () {
    // Another identity's signature over a proposal naming the relay.
    const forged = { ...signProposal(otherKey, announcing(otherKey, [RELAY_IP])), proposal: JSON.stringify(announcing(relayKey, [RELAY_IP])) };
    expect(await check(backTo(RELAY_IP, relayKey, forged))).to.match(/^BAD_CONSUMER_DATA: the relay's proposal .* is refused: .*not signed by its provider/);
    const stranger = IdentityKey.generate();
    expect(await check(backTo(RELAY_IP, stranger))).to.match(/refused: .*not a registered identity/);
    const expired = announcing(relayKey, [RELAY_IP], { createdAt: Date.now() - 7_200_000, expiresAt: Date.now() - 3_600_000 });
    expect(await check(backTo(RELAY_IP, relayKey, signProposal(relayKey, expired)))).to.match(/refused: the proposal expired/);
    const proxyOffer = signProposal(relayKey, announcing(relayKey, [RELAY_IP], { serviceType: "proxy" }));
    expect(await check(backTo(RELAY_IP, relayKey, proxyOffer))).to.equal(
      "BAD_CONSUMER_DATA: the proposal the consumer's dial-back carries is a proxy proposal, not a relay's",
    );
    const others = { ...backTo(RELAY_IP, otherKey), relay: relayKey.address };
    expect(await check(others)).to.equal(
      `BAD_CONSUMER_DATA: the consumer's dial-back names relay ${relayKey.address} but carries the proposal of ${otherKey.address}`,
    );
  });

  it("refuses a consumer that names itself as the relay, and a relay address announced only for punching", async function () {
    const self = await relayDialBack(backTo(RELAY_IP), net.registry, relayKey.address).then(
      () => "ok",
      (err: TunnelError) => `${err.code}: ${err.message}`,
    );
    expect(self).to.equal("BAD_CONSUMER_DATA: the consumer's dial-back names the consumer itself as the relay");
    expect(await relayDialBack(backTo(RELAY_IP), net.registry, otherKey.address).then(() => "ok")).to.equal("ok");
    const punchOnly = announcing(relayKey, []);
    const contact = {
      type: "direct/v1",
      nat: { mapping: "none", filtering: "address-dependent" },
      candidates: [{ kind: "punch-only", address: RELAY_IP, port: 443, protocol: "udp" }],
    };
    const signed = signProposal(relayKey, { ...punchOnly, contacts: [...punchOnly.contacts.filter((c) => c.type !== "direct/v1"), contact] } as Proposal);
    expect(await check(backTo(RELAY_IP, relayKey, signed))).to.match(/is not one relay .* announces \(it announces none\)/);
  });

  it("refuses a public relay's TURN port other than 443, 3478 or 5349: the proof of the relay reaches no other port (BAD_CONSUMER_DATA)", async function () {
    for (const turnPort of [443, 3478, 5349]) expect(await check({ ...backTo(RELAY_IP), turnPort }), String(turnPort)).to.equal("ok");
    expect(await check({ ...backTo(RELAY_IP), turnPort: 22_000 })).to.equal(
      "BAD_CONSUMER_DATA: the consumer's dial-back names TURN port 22000: a relay it takes a dial-back to serves TURN over TLS on 443, 3478, 5349",
    );
  });

  it("takes no dial-back without the relay's proposal (BAD_CONSUMER_DATA)", function () {
    const { proposal: _, ...bare } = backTo(RELAY_IP);
    expect(() => dialBackOf({ dialBack: bare })).to.throw(/dial-back address is malformed/);
  });

  it("a provider refuses, before it dials, a session whose dial-back is a public host no relay announces, or carries no relay's proposal", async function () {
    const opened = (dialBack: unknown) =>
      provider.openSession({ id: "ab".repeat(16), consumer: otherKey.address, consumerData: { client: "proxy/1", dialBack } }).then(
        () => "opened",
        (err: TunnelError) => `${err.code}: ${err.message}`,
      );
    // A public host's address and port alone (what the dial-back was before it carried a relay's
    // proposal): refused as it stands, not dialled (which would fail RELAY_FAILED here, with no route).
    const { proposal: _, ...bare } = backTo("198.51.100.7");
    expect(await opened(bare)).to.match(/^BAD_CONSUMER_DATA: the consumer's dial-back address is malformed/);
    // With a relay's proposal that does not announce it: refused by the check, not by a failed connection.
    expect(await opened(backTo("198.51.100.7"))).to.match(/^BAD_CONSUMER_DATA: the consumer's dial-back address 198.51.100.7 is not one relay/);
    const unchecked = new ProxyProviderService({ dir: dir.dir, publicAddress: "127.0.0.1", port: 0, listen: "127.0.0.1", policy: new DestinationPolicy({}) });
    await unchecked.start();
    try {
      const err = await unchecked
        .openSession({ id: "cd".repeat(16), consumer: otherKey.address, consumerData: { client: "proxy/1", dialBack: backTo(RELAY_IP) } })
        .catch((e: TunnelError) => e);
      expect((err as TunnelError).message).to.match(/no registry to check a relay's proposal against/);
    } finally {
      await unchecked.stop();
    }
  });

  it("says the registry did not answer, not that the consumer's data is bad, when it cannot check (REGISTRY_UNAVAILABLE, a refusal to try again)", async function () {
    const down = {
      publicKeyOf: async (): Promise<Uint8Array | null> => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:8545");
      },
    };
    const err = await relayDialBack(backTo(RELAY_IP), down).catch((e: TunnelError) => e);
    expect((err as TunnelError).code).to.equal("REGISTRY_UNAVAILABLE");
    expect((err as TunnelError).message).to.equal(
      "the relay's proposal the consumer's dial-back carries could not be checked: the identity registry did not answer (connect ECONNREFUSED 127.0.0.1:8545); try again",
    );
    // A provider behind that registry refuses the session so, before it dials.
    const blind = new ProxyProviderService({
      dir: dir.dir,
      publicAddress: "127.0.0.1",
      port: 0,
      listen: "127.0.0.1",
      policy: new DestinationPolicy({}),
      directory: down,
    });
    await blind.start();
    try {
      const refused = await blind
        .openSession({ id: "ef".repeat(16), consumer: otherKey.address, consumerData: { client: "proxy/1", dialBack: backTo(RELAY_IP) } })
        .catch((e: TunnelError) => e);
      expect((refused as TunnelError).code).to.equal("REGISTRY_UNAVAILABLE");
    } finally {
      await blind.stop();
    }
  });
});

/**
 * What bounds the relay proof a dial-back asks for (review of s8-proxy): it has a deadline a slow
 * server cannot hold off, and a consumer gets only so many a minute, refused sessions included.
 */
describe("proxy: the relay proof before a dial-back is bounded", function () {
  this.timeout(20_000);

  // The review of s8-proxy feared an idle timeout held off by a server that dribbles its handshake. Measured: Node's
  // TLS socket does not count handshake bytes as activity, so the old idle timeout fired too; the fixed deadline
  // makes that bound not depend on it. This case passes on both (it guards the bound, it does not show a fix).
  it("gives up at its deadline on a server that sends its handshake a byte at a time", async function () {
    const drip = netModule.createServer((socket) => {
      socket.on("error", () => undefined);
      // A TLS record header announcing a 16 KiB handshake record, then its body a byte every 100 ms.
      socket.write(Buffer.from([0x16, 0x03, 0x03, 0x40, 0x00]));
      const timer = setInterval(() => socket.write(Buffer.from([0x00])), 100);
      socket.on("close", () => clearInterval(timer));
    });
    await new Promise<void>((r) => drip.listen(0, "127.0.0.1", r));
    try {
      const outcome = await Promise.race([
        proveRelayAt("127.0.0.1", (drip.address() as netModule.AddressInfo).port, "0x" + "ee".repeat(20), 1000).then(
          () => "proved",
          (e: TunnelError) => `${e.code}: ${e.message}`,
        ),
        new Promise<string>((r) => setTimeout(() => r("still waiting after 5 s"), 5000)),
      ]);
      expect(outcome).to.match(/^BAD_CONSUMER_DATA: .*no TLS handshake in 1 s/);
    } finally {
      drip.close();
    }
  });

  it(`takes ${DIAL_BACK_PROOFS_PER_MINUTE} proofs a minute from one consumer, then refuses (BAD_CONSUMER_DATA) until the minute has passed; other consumers are not held up`, function () {
    let now = 1_000_000;
    const budget = new ProofBudget(DIAL_BACK_PROOFS_PER_MINUTE, () => now);
    for (let i = 0; i < DIAL_BACK_PROOFS_PER_MINUTE; i++) budget.take("0xAbC");
    expect(() => budget.take("0xabc")).to.throw(/more than 6 relay dial-backs in a minute/);
    budget.take("0xdef");
    now += 60_000;
    budget.take("0xabc");
  });
});
