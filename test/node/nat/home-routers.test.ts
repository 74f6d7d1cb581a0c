import { expect } from "chai";
import { masqueradeRules, natPlan } from "../../../scripts/lib/home-routers";
import { FORWARDED_BASELINE, selectedNatCases } from "../../../scripts/bench/nat-cells";

// The test network's home routers (scripts/lib/home-routers.ts) as the nat benchmarks use them: the rules are applied by
// the e2e topology and the benches (bench/nat-paths.md); here, what each router is given.
describe("the test network's home routers", () => {
  const ns = (name: string) => `myst-t-${name}`;

  describe("a provider public by a forwarded port (forwardedProviders)", () => {
    it("forwards every inbound port of the router's WAN to the provider, beside the same masquerade", () => {
      const plan = natPlan({ provider: "eim", forwardedProviders: [1] }, 1, ns);
      expect(plan.providerHome?.dmzHost).to.equal("192.168.88.2");
      const rules = masqueradeRules("192.168.88.0/24", false, "eim", plan.providerHome?.dmzHost);
      expect(rules).to.include('iifname "wan0" dnat to 192.168.88.2');
      expect(rules).to.include('oifname "wan0" ip saddr 192.168.88.0/24 masquerade\n');
    });

    it("forwards nothing on a router not named, or without the option", () => {
      const plan = natPlan({ provider: "public", secondProvider: "eim", thirdProvider: "eim", forwardedProviders: [3] }, 1, ns);
      expect(plan.secondProviderHome?.dmzHost).to.equal(undefined);
      expect(plan.thirdProviderHome?.dmzHost).to.equal("192.168.90.2");
      expect(natPlan({ provider: "eim" }, 1, ns).providerHome?.dmzHost).to.equal(undefined);
      expect(masqueradeRules("192.168.88.0/24", false, "eim")).not.to.include("dnat");
    });

    it("refuses to forward on a router that is not an eim one, naming the provider", () => {
      expect(() => natPlan({ provider: "symmetric", forwardedProviders: [1] }, 1, ns)).to.throw('names provider 1, whose home router is not "eim"');
      expect(() => natPlan({ provider: "eim", forwardedProviders: [2] }, 1, ns)).to.throw("names provider 2");
    });
  });

  describe("the nat bench's cells", () => {
    it("always measure the forwarded-port baseline beside the public provider's, whichever cells are named", () => {
      const names = selectedNatCases("eim×eim").map((c) => c.name);
      expect(names).to.include(FORWARDED_BASELINE);
      expect(names).to.include("public provider × home consumer (eim)");
      expect(names).to.include("provider behind an eim router × home consumer (eim)");
    });
  });
});
