import { topologyUp, fetchFrom } from "./lib/topology";
import { OpenVpnProviderService } from "../node/services/openvpn/provider";
import { OpenVpnConsumerService } from "../node/services/openvpn/consumer";
import { IdentityKey } from "../node/identity/key";
import { createLogger } from "../node/log/logger";
import fs from "node:fs";
(async () => {
  const t = await topologyUp({ tag: "try", consumers: 1 });
  const dir = fs.mkdtempSync("/tmp/myst-ovpn-");
  const consumer = IdentityKey.generate();
  const log = createLogger("info");
  const provider = new OpenVpnProviderService({ dir: dir + "/p", directory: { publicKeyOf: async () => consumer.publicKey }, publicAddress: t.providerAddress, netns: t.provider, log });
  try {
    let t0 = Date.now();
    await provider.start();
    console.log("provider up in", Date.now() - t0, "pid", provider.pid);
    const config = await provider.openSession({ id: "ab".repeat(16), consumer: consumer.address });
    const svc = new OpenVpnConsumerService({ key: consumer, runDir: dir + "/c", netns: t.consumers[0], log });
    console.log("before:", fetchFrom(t, t.consumers[0], t.internetUrl, 1000));
    t0 = Date.now();
    const tunnel = await svc.connect({ id: "ab".repeat(16), provider: "x", serviceConfig: config });
    console.log("tunnel up in", Date.now() - t0);
    console.log("after:", fetchFrom(t, t.consumers[0], t.internetUrl, 3000));
    console.log("lan:", fetchFrom(t, t.consumers[0], t.lanUrl, 1000));
    await provider.meter();
    console.log("usage", provider.usage("ab".repeat(16)), tunnel.stats());
    await tunnel.stop();
    console.log("after stop:", fetchFrom(t, t.consumers[0], t.internetUrl, 1000));
  } catch (e) { console.error("FAILED", e); }
  finally { await provider.stop(); await t.down(); fs.rmSync(dir, { recursive: true, force: true }); }
})();
