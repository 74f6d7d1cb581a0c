import { expect } from "chai";
import type { FoundProposal } from "../../../node/discovery/client";
import { orderRelays } from "../../../node/daemon/relay-choice";

/** A relay's proposal as discovery returns it: only what the order reads. */
const relay = (provider: string, country: string, perGiB: string, perHour = "0") =>
  ({ signed: { proposal: "", signature: "" }, proposal: { provider, location: { country }, price: { perGiB, perHour } } }) as unknown as FoundProposal;

describe("which relay a consumer tries first", function () {
  const relays = [
    relay("0xa1", "US", "1"),
    relay("0xb2", "DE", "5"),
    relay("0xc3", "FR", "3"),
    relay("0xd4", "FR", "2"),
    relay("0xe5", "DE", "4"),
    relay("0xf6", "NL", "1", "1"),
  ];
  const order = (o: Parameters<typeof orderRelays>[1]) => orderRelays(relays, o).map((r) => r.proposal.provider);

  it("puts relays in the consumer's own country first, then the provider's, each group cheapest first", function () {
    expect(order({ consumerCountry: "FR", providerCountry: "DE" })).to.deep.equal(["0xd4", "0xc3", "0xe5", "0xb2", "0xa1", "0xf6"]);
  });

  it("without the consumer's country, puts the provider's first (the order before the setting)", function () {
    expect(order({ providerCountry: "DE" })).to.deep.equal(["0xe5", "0xb2", "0xa1", "0xf6", "0xd4", "0xc3"]);
  });

  it("with neither known, is the cheapest per GiB, then per hour", function () {
    expect(order({})).to.deep.equal(["0xa1", "0xf6", "0xd4", "0xc3", "0xe5", "0xb2"]);
  });

  it("leaves out the relays to avoid (the provider itself, one that just died), whatever their case", function () {
    expect(order({ consumerCountry: "FR", avoid: ["0xD4", "0xa1"] })).to.deep.equal(["0xc3", "0xf6", "0xe5", "0xb2"]);
  });
});
