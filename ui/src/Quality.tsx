import { useEffect, useState } from "preact/hooks";
import { api } from "./api";
import type { Quality } from "./api-types";
import { ErrorLine, Section, useAction } from "./parts";

/**
 * The provider's quality (docs/quality.md "How a provider reads its failures"): its score per
 * service type, recomputed by the node from the signed receipts and probe results discovery keeps,
 * each failing stage in words with what to check, and the last days' evidence.
 */
export function QualityPanel() {
  const [q, setQ] = useState<Quality | null>(null);
  const load = useAction();
  const refresh = () => load.run(async () => setQ(await api<Quality>("GET", "/v1/quality")));
  useEffect(() => void refresh(), []);
  return (
    <Section id="quality" title="Quality">
      {q === null ? (
        <p>{load.busy ? "Loading…" : "No answer from discovery yet."}</p>
      ) : q.services.length === 0 ? (
        <p>No receipts nor probe results in the last {q.periodHours} h: unrated, listed at the neutral score.</p>
      ) : (
        q.services.map((s) => (
          <div key={s.serviceType} data-testid={`quality-${s.serviceType}`}>
            <dl class="facts">
              <dt>{s.serviceType}</dt>
              <dd data-testid="quality-score">{s.score === null ? "unrated" : `score ${s.score}`}</dd>
              <dt>Receipts</dt>
              <dd>
                {s.receipts} ({s.weighed} backed by a promise){s.successRate === null ? "" : `, success ${Math.round(s.successRate * 100)}%`}
              </dd>
              <dt>Probers</dt>
              <dd>
                {s.probe.score === null
                  ? `no median yet (${s.probe.counted} counted results)`
                  : `${s.probe.score}, median of ${s.probe.probers.length} probers`}
              </dd>
            </dl>
            {s.words.length + s.probe.words.length ? (
              <ul class="notes" aria-label="Failing stages">
                {[...s.words, ...s.probe.words].map((w) => (
                  <li key={w}>{w}</li>
                ))}
              </ul>
            ) : null}
            <table aria-label="Evidence per day">
              <thead>
                <tr>
                  <th>Day</th>
                  <th>Receipts (failed)</th>
                  <th>Probes (failed)</th>
                </tr>
              </thead>
              <tbody>
                {s.history.slice(-14).map((d) => (
                  <tr key={d.day}>
                    <td>{d.day}</td>
                    <td>
                      {d.receipts} ({d.receiptsFailed})
                    </td>
                    <td>
                      {d.probes} ({d.probesFailed})
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))
      )}
      <button type="button" disabled={load.busy} onClick={() => void refresh()}>
        {load.busy ? "Loading…" : "Refresh"}
      </button>
      <ErrorLine error={load.error} />
    </Section>
  );
}
