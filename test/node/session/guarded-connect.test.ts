import { expect } from "chai";
import { connectGuarded } from "../../../node/session/guarded-connect";
import type { ConsumerService, SessionProtection, Tunnel, TunnelGuard, TunnelPlan } from "../../../node/session/service";
import { rejectionOf } from "../../support/rejection";

const PLAN: TunnelPlan = { device: "mwc000000000000", endpoints: [{ address: "198.18.3.2", port: 51820, protocol: "udp" }] };
const TARGET = { id: "0".repeat(32), provider: "0x0000000000000000000000000000000000000001", serviceConfig: {} };

/** A deferred promise: settled by the test. */
function later<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** What happened, in order. */
let events: string[];

function fakeTunnel(): Tunnel {
  return {
    stop: async () => void events.push("tunnel stopped"),
    onDown: () => undefined,
    stats: () => ({ bytesIn: 0, bytesOut: 0 }),
  };
}

/** A protection whose arming the test settles (`armed`); `beside`: whether it can arm beside a tunnel. */
function fakeProtection(beside: boolean) {
  const armed = later();
  const protection: SessionProtection = {
    engage: async () => {
      events.push("engage");
      await armed.promise;
      events.push("armed");
    },
    tunnelUp: async () => undefined,
    abandon: async () => undefined,
    ...(beside
      ? {
          engageBeside: (): TunnelGuard => {
            events.push("engage beside");
            const guard = { routesKept: Promise.resolve(), armed: armed.promise.then(() => void events.push("armed")) };
            guard.armed.catch(() => undefined);
            return guard;
          },
        }
      : {}),
  };
  return { protection, armed };
}

/** A tunnel service; `beside`: it sets up beside the arming and starts its tunnel (the handshake) only once armed, as WireGuard's does. */
function fakeService(beside: boolean, o: { failSetUp?: Error; ignoreGuard?: boolean } = {}): ConsumerService {
  const up = async () => {
    events.push("tunnel started");
    return fakeTunnel();
  };
  return {
    type: "fake",
    consumerData: async () => ({}),
    connect: up,
    ...(beside
      ? {
          connectBeside: async (_session: unknown, guard: TunnelGuard) => {
            await guard.routesKept;
            events.push("set up");
            if (o.failSetUp) throw o.failSetUp;
            if (!o.ignoreGuard) await guard.armed;
            return up();
          },
        }
      : {}),
  };
}

describe("connectGuarded: the tunnel and the kill switch's arming", function () {
  beforeEach(function () {
    events = [];
  });

  for (const [name, service, protection] of [
    ["a service that cannot set up beside the arming", false, true],
    ["a protection that cannot arm beside a tunnel", true, false],
  ] as const)
    it(`with ${name}: the rules are in force before the tunnel is started`, async function () {
      const p = fakeProtection(protection);
      const connecting = connectGuarded(fakeService(service), TARGET, { protection: p.protection, plan: PLAN });
      await new Promise((r) => setTimeout(r, 10));
      expect(events).to.deep.equal(["engage"]);
      p.armed.resolve();
      await connecting;
      expect(events).to.deep.equal(["engage", "armed", "tunnel started"]);
    });

  it("beside: the tunnel is set up while the rules are armed and started once they are; onEngaged says when", async function () {
    const p = fakeProtection(true);
    let engaged = false;
    const connecting = connectGuarded(fakeService(true), TARGET, { protection: p.protection, plan: PLAN }, () => (engaged = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(events).to.deep.equal(["engage beside", "set up"]);
    expect(engaged).to.equal(false);
    p.armed.resolve();
    await connecting;
    expect(events).to.deep.equal(["engage beside", "set up", "armed", "tunnel started"]);
    expect(engaged).to.equal(true);
  });

  it("beside: a tunnel that fails while the rules are armed rejects only once the arming has settled (the undo that follows does not race it)", async function () {
    const p = fakeProtection(true);
    const connecting = rejectionOf(connectGuarded(fakeService(true, { failSetUp: new Error("no uplink") }), TARGET, { protection: p.protection, plan: PLAN }));
    let settled = false;
    void connecting.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).to.equal(false);
    p.armed.resolve();
    expect((await connecting).message).to.equal("no uplink");
    expect(events).to.deep.equal(["engage beside", "set up", "armed"]);
  });

  it("beside: a refused arming is the error, and a tunnel that started anyway is stopped", async function () {
    const p = fakeProtection(true);
    p.armed.reject(new Error("nftables refused the rule set"));
    const err = await rejectionOf(connectGuarded(fakeService(true, { ignoreGuard: true }), TARGET, { protection: p.protection, plan: PLAN }));
    expect(err.message).to.equal("nftables refused the rule set");
    expect(events).to.deep.equal(["engage beside", "set up", "tunnel started", "tunnel stopped"]);
  });

  it("without a plan: the tunnel alone (onEngaged at once: nothing to arm)", async function () {
    await connectGuarded(fakeService(true), TARGET, undefined, () => events.push("no rules to arm"));
    expect(events).to.deep.equal(["no rules to arm", "tunnel started"]);
  });
});
