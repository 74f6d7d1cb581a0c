import { useEffect, useState } from "preact/hooks";
import { api, formatBytes, formatDuration, formatMyst, mystToWei, pathText, short } from "./api";
import { EarningsChart } from "./EarningsChart";
import { Dot, ErrorLine, Field, Section, useAction } from "./parts";
import { useServiceTypes } from "./service-types";
import type { NodeState, ServiceControls } from "./types";
import type { IdentityView } from "./api-types";
import { QualityPanel } from "./Quality";

const IP_TYPES = ["residential", "hosting", "mobile", "business", "education", "unknown"];

function IdentityPanel(props: { identity: string }) {
  const [view, setView] = useState<IdentityView | null>(null);
  const [beneficiary, setBeneficiary] = useState("");
  const load = useAction();
  const register = useAction();
  const refresh = () => load.run(async () => setView(await api<IdentityView>("GET", `/v1/identities/${props.identity}`)));
  useEffect(() => void refresh(), [props.identity]);
  const reg = view?.registration;
  return (
    <Section id="identity" title="Identity">
      <dl class="facts">
        <dt>Address</dt>
        <dd class="mono">{props.identity}</dd>
        <dt>Registration</dt>
        <dd data-testid="registration">{reg ? reg.state : "…"}</dd>
        <dt>Beneficiary</dt>
        <dd class="mono">{reg?.beneficiary ?? (reg?.state === "registered" ? "the identity itself" : "—")}</dd>
        <dt>MYST balance</dt>
        <dd>{view ? (view.balanceWei === null ? "unknown (the chain cannot be asked)" : formatMyst(view.balanceWei)) : "…"}</dd>
      </dl>
      <ErrorLine error={load.error} />
      {reg && reg.state !== "registered" ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void register.run(async () => {
              await api("POST", `/v1/identities/${props.identity}/registration`, beneficiary ? { beneficiary } : {});
              await refresh();
            });
          }}
        >
          <Field label="Beneficiary (optional; who settlements pay)">
            <input value={beneficiary} onInput={(e) => setBeneficiary(e.currentTarget.value)} placeholder="0x…" />
          </Field>
          <button type="submit" disabled={register.busy}>
            Register on chain
          </button>
          <ErrorLine error={register.error} />
        </form>
      ) : null}
    </Section>
  );
}

interface ReachabilityView {
  state: "measured" | "measuring" | "not-measured";
  summary: string;
  contacts: { kind: string; address: string; port: number; protocol: string }[];
}

/** How consumers can reach this node (docs/reachability.md), read again whenever health is checked. */
function ReachabilityChecks(props: { checkedAt?: string }) {
  const [view, setView] = useState<ReachabilityView | null>(null);
  useEffect(() => {
    api<ReachabilityView>("GET", "/v1/reachability").then(setView, () => setView(null));
  }, [props.checkedAt]);
  if (!view) return null;
  return (
    <>
      <h3>Can consumers reach it directly?</h3>
      <p data-testid="reachability">
        {/* Green: reachable directly; grey: by hole punching only, or not measured; red: not at all. */}
        <Dot ok={view.state !== "measured" ? null : view.contacts.some((c) => c.kind !== "punch-only") ? true : view.contacts.length > 0 ? null : false} />{" "}
        {view.summary}
        {view.contacts.length ? <span class="why"> — {view.contacts.map((c) => `${c.kind} ${c.address}:${c.port}`).join(", ")}</span> : null}
      </p>
    </>
  );
}

function HealthPanel(props: { state: NodeState }) {
  const h = props.state.health;
  if (!h)
    return (
      <Section id="health" title="Health and visibility">
        <p>Checking…</p>
      </Section>
    );
  const rows: [string, { ok: boolean; detail: string }][] = [
    ["NATS", h.nats],
    ["Chain", h.chain],
    ["Discovery", h.discovery],
    ["Registration", h.registration],
    ["Storage", h.store],
  ];
  return (
    <Section id="health" title="Health and visibility">
      <ul class="checks">
        {rows.map(([name, c]) => (
          <li key={name} data-check={name}>
            <Dot ok={c.ok} /> <strong>{name}</strong>: {c.detail}
          </li>
        ))}
      </ul>
      <ReachabilityChecks checkedAt={h.checkedAt} />
      <h3>Is the node visible?</h3>
      {h.visibility.length === 0 ? <p>No service runs: consumers cannot find this node.</p> : null}
      <ul class="checks" data-testid="visibility">
        {h.visibility.map((v) => (
          <li key={v.serviceType} data-service={v.serviceType}>
            <Dot ok={v.listed} /> <strong>{v.serviceType}</strong>:{" "}
            {v.listed ? "discovery lists it now" : v.listed === null ? "discovery could not be asked" : "not listed"}
            {v.reasons.length ? <span class="why"> — {v.reasons.join("; ")}</span> : null}
          </li>
        ))}
      </ul>
      <h3>Last sessions refused or ended</h3>
      {h.notes.length === 0 ? (
        <p>None yet.</p>
      ) : (
        <ul class="notes" data-testid="notes">
          {h.notes.map((n) => (
            <li key={`${n.at}-${n.consumer}-${n.sessionId ?? ""}`}>
              <time dateTime={n.at}>{new Date(n.at).toLocaleTimeString()}</time> {n.kind} · {short(n.consumer)}
              {n.serviceType ? ` · ${n.serviceType}` : ""}: {n.reason}
            </li>
          ))}
        </ul>
      )}
      <p class="muted">Checked {new Date(h.checkedAt).toLocaleTimeString()}</p>
    </Section>
  );
}

function ServicesPanel(props: { state: NodeState }) {
  const { types } = useServiceTypes();
  const [chosen, setType] = useState("");
  // Until one is chosen: the first type that needs no settings (it starts as it is), else the first.
  const type = chosen || (types.find((t) => t.required.length === 0) ?? types[0])?.type || "";
  const settings = types.find((t) => t.type === type)?.settings ?? {};
  const takes = (name: string) => name in settings;
  const [country, setCountry] = useState("ZZ");
  const [ipType, setIpType] = useState("residential");
  const [perHour, setPerHour] = useState("0.05");
  const [perGiB, setPerGiB] = useState("0.1");
  const [bandwidth, setBandwidth] = useState("100");
  const [publicIp, setPublicIp] = useState("");
  const [port, setPort] = useState("");
  const [netns, setNetns] = useState("");
  const [dailyCap, setDailyCap] = useState("");
  const [schedule, setSchedule] = useState("");
  const [allow, setAllow] = useState("");
  const [deny, setDeny] = useState("");
  const start = useAction();
  const stop = useAction();
  const services = props.state.provider?.services ?? [];
  return (
    <Section id="services" title="Services">
      {services.length === 0 ? (
        <p>No service runs.</p>
      ) : (
        <div class="scroll">
          <table data-testid="services">
            <thead>
              <tr>
                <th scope="col">Service</th>
                <th scope="col">Country</th>
                <th scope="col">MYST/h</th>
                <th scope="col">MYST/GiB</th>
                <th scope="col">Proposal</th>
                <th scope="col">Sessions</th>
                <th scope="col">Controls</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {services.map((s) => (
                <tr key={s.type} data-service={s.type}>
                  <td>{s.type}</td>
                  <td>{s.offer.country}</td>
                  <td>{formatMyst(s.offer.pricePerHourWei)}</td>
                  <td>{formatMyst(s.offer.pricePerGiBWei)}</td>
                  <td>
                    {s.announcement.state}
                    {s.announcement.lastError ? ` (${s.announcement.lastError})` : ""}
                  </td>
                  <td>{s.sessions}</td>
                  <td data-testid="controls">{controlsText(s.controls)}</td>
                  <td>
                    <button type="button" disabled={stop.busy} onClick={() => void stop.run(() => api("DELETE", `/v1/services/${s.type}`))}>
                      Stop {s.type}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ErrorLine error={stop.error} />
      <form
        class="grid"
        aria-label="Start a service"
        onSubmit={(e) => {
          e.preventDefault();
          void start.run(async () => {
            mystToWei(perHour);
            mystToWei(perGiB);
            await api("POST", "/v1/services", {
              type,
              offer: { country, ipType, pricePerHour: perHour || "0", pricePerGiB: perGiB || "0", bandwidthMbps: Number(bandwidth) },
              // The fields this page has for the settings the type takes (the node's API document says which).
              ...(Object.keys(settings).length
                ? {
                    [type]: {
                      ...(takes("publicIp") ? { publicIp: publicIp.trim() } : {}),
                      ...(takes("port") && port.trim() ? { port: Number(port) } : {}),
                      ...(takes("netns") && netns.trim() ? { netns: netns.trim() } : {}),
                    },
                  }
                : {}),
              ...controlsBody({ dailyCap, schedule, allow, deny }),
            });
          });
        }}
      >
        <Field label="Service type">
          <select value={type} onChange={(e) => setType(e.currentTarget.value)}>
            {types.map(({ type: t }) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Country (2 letters)">
          <input value={country} maxLength={2} onInput={(e) => setCountry(e.currentTarget.value)} />
        </Field>
        <Field label="IP type">
          <select value={ipType} onChange={(e) => setIpType(e.currentTarget.value)}>
            {IP_TYPES.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Price per hour (MYST)">
          <input inputMode="decimal" value={perHour} onInput={(e) => setPerHour(e.currentTarget.value)} />
        </Field>
        <Field label="Price per GiB (MYST)">
          <input inputMode="decimal" value={perGiB} onInput={(e) => setPerGiB(e.currentTarget.value)} />
        </Field>
        <Field label="Bandwidth (Mbit/s)">
          <input type="number" min={0} value={bandwidth} onInput={(e) => setBandwidth(e.currentTarget.value)} />
        </Field>
        <Field label="Daily traffic cap (GiB, optional)">
          <input inputMode="decimal" value={dailyCap} onInput={(e) => setDailyCap(e.currentTarget.value)} />
        </Field>
        <Field label="Schedule (optional)" hint='local time, e.g. "mon-fri 08:00-22:00"; several with ;'>
          <input value={schedule} onInput={(e) => setSchedule(e.currentTarget.value)} />
        </Field>
        <Field label="Allow only these consumers (optional)" hint="identities, comma-separated">
          <input value={allow} onInput={(e) => setAllow(e.currentTarget.value)} />
        </Field>
        <Field label="Deny these consumers (optional)" hint="identities, comma-separated">
          <input value={deny} onInput={(e) => setDeny(e.currentTarget.value)} />
        </Field>
        {takes("publicIp") ? (
          <Field label="Public IP (consumers connect to it)">
            <input value={publicIp} onInput={(e) => setPublicIp(e.currentTarget.value)} required />
          </Field>
        ) : null}
        {takes("port") ? (
          <Field label="UDP port (optional)" hint={settings.port.description}>
            <input type="number" min={1} max={65535} value={port} onInput={(e) => setPort(e.currentTarget.value)} />
          </Field>
        ) : null}
        {takes("netns") ? (
          <Field label="Server's network namespace (optional)" hint="tests, demo">
            <input value={netns} onInput={(e) => setNetns(e.currentTarget.value)} />
          </Field>
        ) : null}
        <div class="actions">
          <button type="submit" disabled={start.busy}>
            Start service
          </button>
        </div>
      </form>
      <ErrorLine error={start.error} />
    </Section>
  );
}

function SessionsPanel(props: { state: NodeState }) {
  const sessions = props.state.provider?.sessions ?? [];
  return (
    <Section id="sessions" title="Live sessions">
      {sessions.length === 0 ? (
        <p data-testid="no-sessions">No session now.</p>
      ) : (
        <div class="scroll">
          <table data-testid="sessions">
            <thead>
              <tr>
                <th scope="col">Consumer</th>
                <th scope="col">Service</th>
                <th scope="col">Duration</th>
                <th scope="col">Bytes in / out</th>
                <th scope="col">Path</th>
                <th scope="col">Earned (MYST)</th>
              </tr>
            </thead>
            <tbody>
              {sessions.map((s) => (
                <tr key={s.id} data-session={s.id}>
                  <td class="mono" title={s.consumer}>
                    {short(s.consumer)}
                  </td>
                  <td>{s.serviceType}</td>
                  <td>{formatDuration(s.durationSeconds)}</td>
                  <td>
                    {formatBytes(s.bytesIn)} / {formatBytes(s.bytesOut)}
                  </td>
                  <td data-testid="path">{pathText(s.path)}</td>
                  <td data-testid="earned">{formatMyst(s.earnedWei, 8)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

function EarningsPanel(props: { state: NodeState }) {
  const e = props.state.earnings;
  const settle = useAction();
  if (!e)
    return (
      <Section id="earnings" title="Earnings">
        <p>Loading…</p>
      </Section>
    );
  return (
    <Section id="earnings" title="Earnings">
      <dl class="facts money">
        <dt>Promised</dt>
        <dd data-testid="promised">{formatMyst(e.totalPromisedWei, 8)} MYST</dd>
        <dt>Settled</dt>
        <dd data-testid="settled">{formatMyst(e.settledWei, 8)} MYST</dd>
        <dt>Unsettled</dt>
        <dd data-testid="unsettled">{formatMyst(e.unsettledWei, 8)} MYST</dd>
        <dt>Settlement fees</dt>
        <dd data-testid="fees">
          {formatMyst(e.gasFeesWei, 8)} ETH (gas, {e.settlementsMined} settlement{e.settlementsMined === 1 ? "" : "s"})
        </dd>
      </dl>
      <button
        type="button"
        disabled={settle.busy || BigInt(e.unsettledWei) === 0n}
        onClick={() => void settle.run(() => api("POST", "/v1/earnings/settlement", {}))}
      >
        {settle.busy ? "Settling…" : "Settle now"}
      </button>
      <ErrorLine error={settle.error} />
      {e.pendingSettlements.length ? (
        <ul class="notes" aria-label="Pending settlements">
          {e.pendingSettlements.map((p) => (
            <li key={p.pairId}>
              {short(p.consumer)}: {formatMyst(p.amountWei)} MYST, {p.state}
              {p.lastError ? ` (${p.lastError})` : ""}
            </li>
          ))}
        </ul>
      ) : null}
      <EarningsChart daily={e.daily} />
      <SessionEarnings sessions={e.sessions} />
    </Section>
  );
}

/** What each recent session earned, with what it sold and its path (a relay's: what it earned per relayed session). */
function SessionEarnings(props: { sessions: NonNullable<NodeState["earnings"]>["sessions"] }) {
  const recent = props.sessions.slice(-10).reverse();
  if (recent.length === 0) return null;
  return (
    <div class="scroll">
      <table data-testid="earnings-sessions" aria-label="Earnings per session">
        <thead>
          <tr>
            <th scope="col">Consumer</th>
            <th scope="col">Service</th>
            <th scope="col">Path</th>
            <th scope="col">Bytes</th>
            <th scope="col">Earned (MYST)</th>
          </tr>
        </thead>
        <tbody>
          {recent.map((s) => (
            <tr key={s.sessionId} data-session={s.sessionId}>
              <td class="mono" title={s.consumer}>
                {short(s.consumer)}
              </td>
              <td>{s.serviceType ?? "—"}</td>
              <td data-testid="path">{pathText(s.path)}</td>
              <td>{s.bytes === undefined ? "—" : formatBytes(s.bytes)}</td>
              <td>{formatMyst(s.promisedWei, 8)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function ProviderScreen(props: { identity: string; state: NodeState }) {
  return (
    <div class="screen" data-screen="provider">
      <IdentityPanel identity={props.identity} />
      <HealthPanel state={props.state} />
      <ServicesPanel state={props.state} />
      <SessionsPanel state={props.state} />
      <EarningsPanel state={props.state} />
      <QualityPanel />
    </div>
  );
}

const list = (text: string) =>
  text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

/** The `controls` of a start-service body, from the form's optional fields (the node checks each value). */
function controlsBody(f: { dailyCap: string; schedule: string; allow: string; deny: string }): { controls?: Record<string, unknown> } {
  const controls: Record<string, unknown> = {};
  if (f.dailyCap.trim()) controls.trafficCap = { dailyGiB: Number(f.dailyCap) };
  const windows = f.schedule
    .split(";")
    .map((x) => x.trim())
    .filter(Boolean);
  if (windows.length) controls.schedule = windows;
  const allow = list(f.allow);
  const deny = list(f.deny);
  if (allow.length || deny.length) controls.access = { ...(allow.length ? { allow } : {}), ...(deny.length ? { deny } : {}) };
  return Object.keys(controls).length ? { controls } : {};
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** A service's controls in a few words: offered or why not, caps left, schedule, access. */
function controlsText(c?: ServiceControls): string {
  if (!c) return "none";
  const parts = [c.offered ? "offered" : `withdrawn (${c.withdrawnBecause ?? "?"})`];
  for (const period of ["daily", "monthly"] as const) {
    const u = c.trafficCap?.[period];
    if (u) parts.push(`${period} cap: ${mib(u.remainingBytes)} left of ${mib(u.capBytes)}`);
  }
  if (c.schedule) parts.push(`schedule ${c.schedule.open ? "open" : "closed"}`);
  if (c.access) parts.push(`access: ${c.access.policy}`);
  return parts.join(" · ");
}
