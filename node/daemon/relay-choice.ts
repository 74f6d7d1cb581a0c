import type { FoundProposal } from "../discovery/client";

/**
 * Where the relays a consumer may use are put in order (issue 29): a relay near the consumer
 * first, since its traffic goes consumer → relay → provider and the consumer's leg is the one it
 * chose least (docs/relay.md "Which relay"). "Near" is by country, as discovery knows relays:
 *  1. the consumer's own country (its `country` setting; a node knows no location of its own
 *     otherwise: it runs no location service, and its reachability result is an address, not a place),
 *  2. then the provider's country (the other end of the relayed path; today's order without the setting),
 *  3. then the cheapest per GiB, then per hour.
 * Relays in `avoid` (the provider itself, a relay that just died) are left out.
 */
export function orderRelays(
  found: readonly FoundProposal[],
  o: { consumerCountry?: string; providerCountry?: string; avoid?: readonly string[] },
): FoundProposal[] {
  const avoid = new Set((o.avoid ?? []).map((a) => a.toLowerCase()));
  const near = (p: FoundProposal, country?: string) => Number(country !== undefined && p.proposal.location.country === country);
  return found
    .filter((p) => !avoid.has(p.proposal.provider.toLowerCase()))
    .sort(
      (a, b) =>
        near(b, o.consumerCountry) - near(a, o.consumerCountry) ||
        near(b, o.providerCountry) - near(a, o.providerCountry) ||
        cmp(BigInt(a.proposal.price.perGiB), BigInt(b.proposal.price.perGiB)) ||
        cmp(BigInt(a.proposal.price.perHour), BigInt(b.proposal.price.perHour)),
    );
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
