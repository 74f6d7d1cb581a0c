import { expect } from "chai";
import { Admissions } from "../../../node/consumer-protection/admissions";
import type { TunnelEndpoint } from "../../../node/session/service";

const RELAY: TunnelEndpoint = { address: "198.18.4.2", port: 3478, protocol: "udp" };
const RELAY_TCP: TunnelEndpoint = { ...RELAY, protocol: "tcp" };
const PROVIDER: TunnelEndpoint = { address: "198.18.3.2", port: 51820, protocol: "udp" };

describe("kill-switch admissions (who needs each endpoint let out beside the plan)", function () {
  it("adds an endpoint on its first admission only, and takes it out on its last withdrawal only", function () {
    const a = new Admissions();
    expect(a.take([RELAY], []).fresh).to.deep.equal([RELAY]);
    expect(a.take([{ ...RELAY }], []).fresh).to.deep.equal([]);
    expect(a.give([RELAY], [])).to.deep.equal([]);
    expect(a.endpoints()).to.deep.equal([RELAY]);
    expect(a.give([RELAY], [])).to.deep.equal([RELAY]);
    expect(a.endpoints()).to.deep.equal([]);
  });

  it("never takes out what the plan names: admitted while already let out, it is counted, not added, and stays when given back", function () {
    const a = new Admissions();
    expect(a.take([PROVIDER], [PROVIDER]).fresh).to.deep.equal([]);
    expect(a.give([PROVIDER], [PROVIDER])).to.deep.equal([]);
  });

  it("ignores a withdrawal of what was never admitted, or was admitted before a clear (the protection lifted)", function () {
    const a = new Admissions();
    expect(a.give([RELAY], [])).to.deep.equal([]);
    a.take([RELAY], []);
    a.clear();
    expect(a.give([RELAY], [])).to.deep.equal([]);
    expect(a.endpoints()).to.deep.equal([]);
  });

  it("tells endpoints apart by address, protocol and port; an admission whose transaction failed gives its holds back", async function () {
    const a = new Admissions();
    a.take([RELAY], []);
    const second = a.take([RELAY, RELAY_TCP], []);
    expect(second.fresh).to.deep.equal([RELAY_TCP]);
    const failed = Promise.reject(new Error("nft refused"));
    second.added(failed);
    await failed.catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    expect(a.endpoints()).to.deep.equal([RELAY]);
    expect(a.give([RELAY], [])).to.deep.equal([RELAY]);
    a.take([RELAY], []);
    expect(a.unheld([RELAY, RELAY_TCP])).to.deep.equal([RELAY_TCP]);
  });
});
