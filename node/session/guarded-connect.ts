import { tracedSync } from "../log/connect-trace";
import type { ConsumerService, SessionProtection, Tunnel, TunnelPlan } from "./service";

/**
 * Brings the tunnel up with consumer protection engaged for `plan`. When both sides can, beside
 * each other: the tunnel sets up its interface and routes while the rules are armed, and sends
 * nothing before they are (the arming's transaction then costs the connect nothing but its wait
 * on the slower of the two); otherwise the rules first, then the tunnel. Either way, when this
 * rejects the arming has settled, so the undo that follows does not race it, and no tunnel is
 * left running. `onEngaged` is called once the rules are in force (at once when there are none).
 */
export async function connectGuarded(
  service: ConsumerService,
  target: Parameters<ConsumerService["connect"]>[0],
  guarded: { protection: SessionProtection; plan: TunnelPlan } | undefined,
  onEngaged?: () => void,
): Promise<Tunnel> {
  if (!guarded) {
    onEngaged?.();
    return service.connect(target);
  }
  const { protection, plan } = guarded;
  if (!protection.engageBeside || !service.connectBeside) {
    await protection.engage(plan);
    onEngaged?.();
    return service.connect(target);
  }
  const guard = tracedSync("kill switch: engageBeside (its synchronous part)", () => protection.engageBeside!(plan));
  void guard.armed.then(onEngaged, () => undefined);
  let tunnel: Tunnel | undefined;
  try {
    tunnel = await service.connectBeside(target, guard);
    // The service waited for it before the tunnel carried anything; a service that did not is not trusted.
    await guard.armed;
    return tunnel;
  } catch (err) {
    await guard.armed.catch(() => undefined);
    await tunnel?.stop().catch(() => undefined);
    throw err;
  }
}
