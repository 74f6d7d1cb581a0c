import { expect } from "chai";
import { IdentityKey } from "../../../node/identity/key";
import { type Proposal, signProposal } from "../../../node/proposal/proposal";
import { checkProviderPeers } from "../../../node/services/relay/provider-peers";
import type { TunnelError } from "../../../node/services/system";
import { makeProposal } from "../../../scripts/lib/proposals";
import { TestNetwork } from "../../../scripts/lib/test-network";

/**
 * A relay relays only to its consumer's provider (issue 29): the peers a relay session names must
 * be addresses the provider's signed proposal announces, the proposal signed by that provider,
 * registered, unexpired, and not a relay's. Real registry (Hardhat chain).
 */
describe("relay: the named peers are the provider's (its signed proposal)", function () {
  const net = new TestNetwork();
  let providerKey: IdentityKey;
  let otherKey: IdentityKey;

  before(async function () {
    await net.start();
    [providerKey, otherKey] = [await net.registeredIdentity(), await net.registeredIdentity()];
  });
  after(() => net.stop());

  /** A provider's proposal whose direct contact announces `addresses`. */
  const announcing = (key: IdentityKey, addresses: string[], overrides: Partial<Proposal> = {}): Proposal => {
    const p = makeProposal(key, { serviceType: "wireguard" });
    return {
      ...p,
      contacts: [
        ...p.contacts,
        {
          type: "direct/v1",
          nat: { mapping: "endpoint-dependent", filtering: "address-and-port-dependent" },
          candidates: addresses.map((address) => ({ kind: "punch-only" as const, address, port: 51820, protocol: "udp" as const })),
        },
      ],
      ...overrides,
    } as Proposal;
  };
  const check = (consumerData: unknown, peers: string[]) =>
    checkProviderPeers(consumerData, peers, net.registry).then(
      (provider) => `ok ${provider}`,
      (err: TunnelError) => `${err.code}: ${err.message}`,
    );

  it("takes peers the provider's signed proposal announces, and says whose they are", async function () {
    const provider = signProposal(providerKey, announcing(providerKey, ["93.184.216.34", "93.184.216.35"]));
    expect(await check({ peers: ["93.184.216.35"], provider }, ["93.184.216.35"])).to.equal(`ok ${providerKey.address}`);
    expect(await check({ provider }, ["93.184.216.34", "93.184.216.35"])).to.equal(`ok ${providerKey.address}`);
  });

  it("refuses a peer the proposal does not announce, naming it and what is announced (BAD_CONSUMER_DATA)", async function () {
    const provider = signProposal(providerKey, announcing(providerKey, ["93.184.216.34"]));
    expect(await check({ provider }, ["93.184.216.34", "198.51.100.7"])).to.equal(
      `BAD_CONSUMER_DATA: a relay session names 198.51.100.7, not an address provider ${providerKey.address} announces (93.184.216.34)`,
    );
    const none = signProposal(providerKey, makeProposal(providerKey, { serviceType: "wireguard" }));
    expect(await check({ provider: none }, ["93.184.216.34"])).to.match(/^BAD_CONSUMER_DATA: .*announces \(it announces none\)$/);
  });

  it("refuses a session without the provider's proposal, a forged, unregistered, expired one, and a relay's", async function () {
    const peers = ["93.184.216.34"];
    expect(await check({ peers }, peers)).to.match(/^BAD_CONSUMER_DATA: a relay session must carry the provider's signed proposal/);
    // Another identity's signature over a proposal naming the provider.
    const forged = { ...signProposal(otherKey, announcing(otherKey, peers)), proposal: JSON.stringify(announcing(providerKey, peers)) };
    expect(await check({ provider: forged }, peers)).to.match(
      /^BAD_CONSUMER_DATA: the provider's proposal a relay session carries is refused: .*not signed by its provider/,
    );
    const stranger = IdentityKey.generate();
    expect(await check({ provider: signProposal(stranger, announcing(stranger, peers)) }, peers)).to.match(/refused: .*not a registered identity/);
    const expired = announcing(providerKey, peers, { createdAt: Date.now() - 7_200_000, expiresAt: Date.now() - 3_600_000 });
    expect(await check({ provider: signProposal(providerKey, expired) }, peers)).to.match(/refused: the proposal expired/);
    expect(await check({ provider: signProposal(providerKey, announcing(providerKey, peers, { serviceType: "relay" })) }, peers)).to.equal(
      "BAD_CONSUMER_DATA: the proposal a relay session carries is a relay's, not a provider's",
    );
    expect(await check({ provider: "not a proposal" }, peers)).to.match(/^BAD_CONSUMER_DATA: the provider's proposal a relay session carries is refused/);
  });

  it("says the registry did not answer when it cannot check the provider's proposal (REGISTRY_UNAVAILABLE), not that the session's data is bad", async function () {
    const peers = ["93.184.216.34"];
    const down = {
      publicKeyOf: async (): Promise<Uint8Array | null> => {
        throw new Error("timeout");
      },
    };
    const err = await checkProviderPeers({ provider: signProposal(providerKey, announcing(providerKey, peers)) }, peers, down).catch((e: TunnelError) => e);
    expect(`${(err as TunnelError).code}: ${(err as TunnelError).message}`).to.equal(
      "REGISTRY_UNAVAILABLE: the provider's proposal a relay session carries could not be checked: the identity registry did not answer (timeout); try again",
    );
  });
});
