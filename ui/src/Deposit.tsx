import { useEffect, useState } from "preact/hooks";
import { api, formatMyst } from "./api";
import type { DepositResult, Vault } from "./api-types";
import { ErrorLine, Field, Section, useAction } from "./parts";

/**
 * The consumer's vault: one deposit that pays any provider (/v1/vault), its balance and penalty
 * escrow, and a deposit from the identity's own MYST.
 */
export function DepositPanel(props: { refreshKey: string }) {
  const [vault, setVault] = useState<Vault | null>(null);
  const [amount, setAmount] = useState("1");
  const [escrow, setEscrow] = useState("0");
  const load = useAction();
  const deposit = useAction();
  const refresh = () => load.run(async () => setVault(await api<Vault>("GET", "/v1/vault")));
  useEffect(() => void refresh(), [props.refreshKey]);
  return (
    <Section id="deposit" title="Deposit">
      <p>One deposit pays any provider: a session with a provider never used before needs no transaction. The escrow is forfeited if the vault is overdrawn.</p>
      <dl class="facts">
        <dt>In the vault</dt>
        <dd data-testid="deposit-balance">{vault ? `${formatMyst(vault.balanceWei)} MYST` : "…"}</dd>
        <dt>Escrow</dt>
        <dd data-testid="deposit-escrow">{vault ? `${formatMyst(vault.escrowWei)} MYST` : "…"}</dd>
        <dt>Exit</dt>
        <dd>{vault ? (vault.exitReadyAt ? `requested; withdraw from ${vault.exitReadyAt}` : "none pending") : "…"}</dd>
        <dt>Own MYST</dt>
        <dd>{vault ? `${formatMyst(vault.walletWei)} MYST` : "…"}</dd>
      </dl>
      <ErrorLine error={load.error} />
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void deposit.run(async () => {
            const r = await api<DepositResult>("POST", "/v1/vault/deposit", { amount: amount.trim() || "0", escrow: escrow.trim() || "0" });
            setVault(r.vault);
          });
        }}
      >
        <Field label="Deposit (MYST)">
          <input inputMode="decimal" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
        </Field>
        <Field label="Add to escrow (MYST)">
          <input inputMode="decimal" value={escrow} onInput={(e) => setEscrow(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={deposit.busy}>
          {deposit.busy ? "Depositing…" : "Deposit"}
        </button>
      </form>
      <ErrorLine error={deposit.error} />
    </Section>
  );
}
