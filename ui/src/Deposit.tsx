import { useEffect, useState } from "preact/hooks";
import { api, formatMyst, short } from "./api";
import { ErrorLine, Field, Section, useAction } from "./parts";

interface Channel {
  channelId: string;
  balanceWei: string;
  spentWei: string;
  withdrawalReadyAt: string | null;
}

/**
 * The consumer's deposit with one provider and its top-up. Today a deposit is a payment channel
 * per provider (/v1/channels/:provider); kept apart so it can follow the payment model when it
 * changes.
 */
export function DepositPanel(props: { provider?: string; refreshKey: string }) {
  const [channel, setChannel] = useState<Channel | null>(null);
  const [amount, setAmount] = useState("1");
  const load = useAction();
  const topUp = useAction();
  const { provider } = props;
  const refresh = () => (provider ? load.run(async () => setChannel(await api<Channel>("GET", `/v1/channels/${provider}`))) : Promise.resolve());
  useEffect(() => void refresh(), [provider, props.refreshKey]);
  return (
    <Section id="deposit" title="Deposit">
      {!provider ? (
        <p>Connect to a provider to see the deposit that pays it.</p>
      ) : (
        <>
          <dl class="facts">
            <dt>Provider</dt>
            <dd class="mono" title={provider}>
              {short(provider)}
            </dd>
            <dt>Deposited, not yet settled</dt>
            <dd data-testid="deposit-balance">{channel ? `${formatMyst(channel.balanceWei)} MYST` : "…"}</dd>
            <dt>Paid to the provider so far</dt>
            <dd>{channel ? `${formatMyst(channel.spentWei)} MYST` : "…"}</dd>
          </dl>
          <ErrorLine error={load.error} />
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              void topUp.run(async () => {
                const r = await api<{ channel: Channel }>("POST", `/v1/channels/${provider}/topup`, { amount });
                setChannel(r.channel);
              });
            }}
          >
            <Field label="Top up (MYST)">
              <input inputMode="decimal" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
            </Field>
            <button type="submit" disabled={topUp.busy}>
              {topUp.busy ? "Depositing…" : "Top up"}
            </button>
          </form>
          <ErrorLine error={topUp.error} />
        </>
      )}
    </Section>
  );
}
