import { useEffect, useState } from "preact/hooks";
import { ApiError, api, formatBytes, formatDuration, formatMyst, mystToWei, pathText, short } from "./api";
import { DepositPanel } from "./Deposit";
import { Dot, ErrorLine, Field, Section, useAction } from "./parts";
import { useServiceTypes } from "./service-types";
import type { VisibleIp } from "./api-types";
import type { ConnectionTopic, NodeState, Proposal } from "./types";

const IP_TYPES = ["residential", "hosting", "mobile", "business", "education", "unknown"];

interface Filters {
  serviceType: string;
  country: string;
  ipType: string;
  metering: string;
  maxPerHour: string;
  maxPerGiB: string;
  minBandwidth: string;
  ipv6: boolean;
  accessPolicy: string;
  provider: string;
}

/** The discovery query of the filter form: the API's one spelling (camelCase, prices in MYST as typed, checked here first). */
function query(f: Filters): string {
  const q = new URLSearchParams();
  if (f.serviceType) q.set("serviceType", f.serviceType);
  if (f.country.trim()) q.set("country", f.country.trim().toUpperCase());
  if (f.ipType) q.set("ipType", f.ipType);
  if (f.metering) q.set("metering", f.metering);
  if (mystToWei(f.maxPerHour) !== undefined) q.set("maxPricePerHour", f.maxPerHour.trim());
  if (mystToWei(f.maxPerGiB) !== undefined) q.set("maxPricePerGiB", f.maxPerGiB.trim());
  if (f.minBandwidth.trim()) q.set("minBandwidthMbps", f.minBandwidth.trim());
  if (f.ipv6) q.set("ipv6", "true");
  if (f.accessPolicy) q.set("accessPolicy", f.accessPolicy);
  if (f.provider.trim()) q.set("providerId", f.provider.trim());
  q.set("limit", "50");
  return q.toString();
}

function VisibleIpPanel(props: { netns: string; connection?: ConnectionTopic }) {
  const [ip, setIp] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const state = props.connection?.state;
  // What the check could not tell is said in place, not as an alert: the page's alerts are for
  // what went wrong with what the person asked for (a connect the provider refused).
  const run = async () => {
    setBusy(true);
    setIp(null);
    try {
      const q = props.netns ? `?netns=${encodeURIComponent(props.netns)}` : "";
      setIp((await api<VisibleIp>("GET", `/v1/connection/visible-ip${q}`)).ip);
    } catch (err) {
      setIp(
        err instanceof ApiError && err.code === "IP_CHECK_UNCONFIGURED" ? "not checked (no ipCheckUrl configured)" : `not known: ${(err as Error).message}`,
      );
    } finally {
      setBusy(false);
    }
  };
  // Checked again whenever the connection changes state (an event), not on a timer.
  useEffect(() => {
    if (state !== "connecting") void run();
  }, [state, props.netns]);
  const p = props.connection?.protection;
  return (
    <Section id="visible-ip" title="What the internet sees">
      <dl class="facts">
        <dt>Visible IP</dt>
        <dd data-testid="visible-ip" aria-live="polite">
          {busy ? "checking…" : (ip ?? "—")}
        </dd>
        <dt>Kill switch</dt>
        <dd data-testid="kill-switch">{p ? `${p.killSwitch ? "on" : "off"} (${p.state}): ${p.message}` : "not engaged (no connection)"}</dd>
      </dl>
      <button type="button" onClick={() => void run()} disabled={busy}>
        Check visible IP
      </button>
    </Section>
  );
}

function ConnectionPanel(props: { connection?: ConnectionTopic; onDisconnect: () => Promise<unknown> }) {
  const c = props.connection;
  const disconnect = useAction();
  const active = c && ["connected", "blocked", "reconnecting"].includes(c.state);
  return (
    <Section id="connection" title="Connection">
      <p>
        <Dot ok={c ? c.state === "connected" : null} /> <strong data-testid="connection-state">{c?.state ?? "…"}</strong>
        {c?.endReason ? ` (${c.endReason})` : ""}
      </p>
      {c?.paymentRefused && c.state === "connected" ? (
        <p class="error" role="alert" data-testid="payment-refused">
          The provider did not take the last payment: <strong>{c.paymentRefused.code}</strong>. {c.paymentRefused.message}
        </p>
      ) : null}
      {c?.lastFailure && c.state === "disconnected" ? (
        <p class="error" role="alert" data-testid="connect-failure">
          Could not connect
          {c.lastFailure.refusal ? (
            <>
              {" "}
              — the provider refused: <strong>{c.lastFailure.refusal}</strong>
            </>
          ) : null}
          . {c.lastFailure.message}
        </p>
      ) : null}
      {c?.sessionId ? (
        <dl class="facts">
          <dt>Provider</dt>
          <dd class="mono" title={c.provider}>
            {c.provider ? short(c.provider) : "—"}
          </dd>
          <dt>Service</dt>
          <dd>
            {c.serviceType} {c.country ? `· ${c.country}` : ""}
          </dd>
          <dt>Duration</dt>
          <dd>{formatDuration(c.durationSeconds ?? 0)}</dd>
          <dt>Bytes in / out</dt>
          <dd>
            {formatBytes(c.bytesIn ?? 0)} / {formatBytes(c.bytesOut ?? 0)}
          </dd>
          <dt>Cost so far</dt>
          <dd data-testid="cost">{formatMyst(c.promisedWei ?? "0", 8)} MYST</dd>
          <dt>Path</dt>
          <dd data-testid="path" title={c.path?.relay ? `${c.path.relay.provider} at ${c.path.relay.address}:${c.path.relay.port}` : undefined}>
            {pathText(c.path)}
          </dd>
          {c.path?.relay ? (
            <>
              <dt>Paid to the relay</dt>
              <dd data-testid="relay-cost">
                {formatMyst(c.path.relayPromisedWei ?? "0", 8)} MYST for {formatBytes(c.path.relayBytes ?? 0)}
              </dd>
            </>
          ) : null}
        </dl>
      ) : null}
      {active ? (
        <button type="button" disabled={disconnect.busy} onClick={() => void disconnect.run(props.onDisconnect)}>
          {disconnect.busy ? "Disconnecting…" : "Disconnect"}
        </button>
      ) : null}
      <ErrorLine error={disconnect.error} />
    </Section>
  );
}

export function ConsumerScreen(props: { state: NodeState }) {
  const [f, setF] = useState<Filters>({
    serviceType: "",
    country: "",
    ipType: "",
    metering: "",
    maxPerHour: "",
    maxPerGiB: "",
    minBandwidth: "",
    ipv6: false,
    accessPolicy: "",
    provider: "",
  });
  const serviceTypes = useServiceTypes();
  // Until the node's types are known, "any"; then the type a connection buys when none is named.
  const [defaulted, setDefaulted] = useState(false);
  useEffect(() => {
    if (defaulted || !serviceTypes.connectDefault) return;
    setDefaulted(true);
    setF((now) => (now.serviceType ? now : { ...now, serviceType: serviceTypes.connectDefault }));
  }, [serviceTypes.connectDefault]);
  const [killSwitch, setKillSwitch] = useState(true);
  const [netns, setNetns] = useState("");
  const [results, setResults] = useState<Proposal[] | null>(null);
  const search = useAction();
  const connect = useAction();
  const set = (k: keyof Filters) => (e: { currentTarget: HTMLInputElement | HTMLSelectElement }) =>
    setF({ ...f, [k]: e.currentTarget instanceof HTMLInputElement && e.currentTarget.type === "checkbox" ? e.currentTarget.checked : e.currentTarget.value });
  const connection = props.state.connection;
  const busyConnecting = connect.busy || connection?.state === "connecting";
  return (
    <div class="screen" data-screen="consumer">
      <VisibleIpPanel netns={netns} connection={connection} />
      <ConnectionPanel connection={connection} onDisconnect={() => api("DELETE", "/v1/connection")} />
      <Section id="proposals" title="Find a provider">
        <form
          class="grid"
          aria-label="Filters"
          onSubmit={(e) => {
            e.preventDefault();
            void search.run(async () => setResults((await api<{ proposals: Proposal[] }>("GET", `/v1/proposals?${query(f)}`)).proposals));
          }}
        >
          <Field label="Service type">
            <select value={f.serviceType} onChange={set("serviceType")}>
              <option value="">any</option>
              {serviceTypes.types.map(({ type: t }) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Country (2 letters)">
            <input value={f.country} maxLength={2} onInput={set("country")} placeholder="any" />
          </Field>
          <Field label="IP type">
            <select value={f.ipType} onChange={set("ipType")}>
              <option value="">any</option>
              {IP_TYPES.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Priced">
            <select value={f.metering} onChange={set("metering")}>
              <option value="">either way</option>
              <option value="hour">per hour</option>
              <option value="gib">per GiB</option>
            </select>
          </Field>
          <Field label="Max price per hour (MYST)">
            <input inputMode="decimal" value={f.maxPerHour} onInput={set("maxPerHour")} />
          </Field>
          <Field label="Max price per GiB (MYST)">
            <input inputMode="decimal" value={f.maxPerGiB} onInput={set("maxPerGiB")} />
          </Field>
          <Field label="Min bandwidth (Mbit/s)">
            <input type="number" min={0} value={f.minBandwidth} onInput={set("minBandwidth")} />
          </Field>
          <Field label="Access policy">
            <select value={f.accessPolicy} onChange={set("accessPolicy")}>
              <option value="">any</option>
              <option value="open">open to anyone</option>
              <option value="allowlist">allow list only</option>
            </select>
          </Field>
          <Field label="Provider address">
            <input value={f.provider} onInput={set("provider")} placeholder="0x… (any)" />
          </Field>
          <label class="check">
            <input type="checkbox" checked={f.ipv6} onChange={set("ipv6")} /> Only providers that carry IPv6
          </label>
          <div class="actions">
            <button type="submit" disabled={search.busy}>
              Search
            </button>
          </div>
        </form>
        <ErrorLine error={search.error} />
        <fieldset class="grid">
          <legend>How to connect</legend>
          <label class="check">
            <input type="checkbox" checked={killSwitch} onChange={(e) => setKillSwitch(e.currentTarget.checked)} /> Kill switch (block traffic if the tunnel
            drops)
          </label>
          <Field label="Network namespace (optional)" hint="run the tunnel in this namespace (tests, demo)">
            <input value={netns} onInput={(e) => setNetns(e.currentTarget.value)} />
          </Field>
        </fieldset>
        {results === null ? null : results.length === 0 ? (
          <p data-testid="no-proposals">No provider matches.</p>
        ) : (
          <div class="scroll">
            <table data-testid="proposals">
              <caption class="visually-hidden">Matching providers</caption>
              <thead>
                <tr>
                  <th scope="col">Provider</th>
                  <th scope="col">Service</th>
                  <th scope="col">Where</th>
                  <th scope="col">MYST/h</th>
                  <th scope="col">MYST/GiB</th>
                  <th scope="col">Mbit/s</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {results.map((p) => (
                  <tr key={`${p.provider}-${p.serviceType}`} data-provider={p.provider}>
                    <td class="mono" title={p.provider}>
                      {short(p.provider)}
                    </td>
                    <td>{p.serviceType}</td>
                    <td>
                      {p.location.country} · {p.location.ipType}
                      {p.ipv6 ? " · IPv6" : ""}
                      {p.accessPolicy === "allowlist" ? " · allow list" : ""}
                    </td>
                    <td>{formatMyst(p.price.perHour)}</td>
                    <td>{formatMyst(p.price.perGiB)}</td>
                    <td>{p.bandwidthMbps}</td>
                    <td>
                      <button
                        type="button"
                        disabled={busyConnecting}
                        aria-label={`Connect to ${p.provider} (${p.serviceType})`}
                        onClick={() =>
                          void connect.run(() =>
                            api("PUT", "/v1/connection", {
                              provider: p.provider,
                              serviceType: p.serviceType,
                              killSwitch,
                              ...(netns.trim() ? { netns: netns.trim() } : {}),
                            }),
                          )
                        }
                      >
                        Connect
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <ErrorLine error={connect.error} />
      </Section>
      <DepositPanel refreshKey={`${connection?.sessionId ?? ""}-${connection?.state ?? ""}`} />
    </div>
  );
}
