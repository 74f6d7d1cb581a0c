import { Wallet } from "ethers";
import { ConsumerVaultClient } from "../../chain/vault";
import type { NodeCore } from "../../daemon/core";
import { earningsReport, type EarningsReport } from "../../payments/reports";
import { Settler } from "../../payments/settlement";
import { PromiseStore } from "../../store/promise-store";

/** What this node earned as a provider: promised, settled, pending; and settling it now. */
export class EarningsOps {
  constructor(private readonly core: NodeCore) {}

  report(): EarningsReport {
    const online = this.core.maybeOnline;
    if (online) return earningsReport(online.provider.store, online.provider.settler.pending(), this.core.history);
    return earningsReport(new PromiseStore(this.core.db), undefined, this.core.history);
  }

  /**
   * Settles every pair now (in batches), waits (30 s online; 60 s offline, whose queue lives only
   * for this call), then pays the earnings the vault credited to the beneficiary: what is still
   * pending shows with its state and error.
   */
  async settle(): Promise<EarningsReport> {
    const online = this.core.maybeOnline;
    if (online) {
      const settler = online.provider.settler;
      settler.settleAll();
      if (await settler.drain(30_000)) await settler.payOut(this.core.me());
      return this.report();
    }
    const key = await this.core.unlocked();
    const { conn } = await this.core.chain();
    const store = new PromiseStore(this.core.db);
    const settler = new Settler(store, new ConsumerVaultClient(conn), new Wallet(key.privateKeyHex(), conn.provider), { log: this.core.log });
    settler.settleAll();
    if (await settler.drain(60_000)) await settler.payOut(key.address);
    settler.stop();
    return earningsReport(store, settler.pending(), this.core.history);
  }
}
