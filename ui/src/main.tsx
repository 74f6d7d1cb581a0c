import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api, short } from "./api";
import { ConsumerScreen } from "./Consumer";
import { ProviderScreen } from "./Provider";
import type { Health, LoginResult } from "./api-types";
import type { NodeState } from "./types";
import "./style.css";

type Login = { state: "checking" } | { state: "in"; identity: string } | { state: "out"; message: string };

/** Trades a `#login=<code>` in the address for the session cookie, and takes the code out of the address and history. */
async function logIn(): Promise<Login> {
  const code = new URLSearchParams(location.hash.slice(1)).get("login");
  if (code) {
    history.replaceState(null, "", location.pathname);
    try {
      const { identity } = await api<LoginResult>("POST", "/v1/ui/session", { code });
      return { state: "in", identity };
    } catch (err) {
      return { state: "out", message: (err as Error).message };
    }
  }
  try {
    const { identity } = await api<Health>("GET", "/health");
    await api("GET", "/v1/services");
    // A daemon always runs as an identity; only an offline node (never serving a page) has none.
    return { state: "in", identity: identity ?? "" };
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return { state: "out", message: "Not logged in." };
    return { state: "out", message: (err as Error).message };
  }
}

/**
 * Follows /v1/events: each event is a topic's whole new value. EventSource reconnects by itself
 * after a dropped connection; when the node refuses the stream (a restart ends every session),
 * `onRefused` decides what next.
 */
function useNodeEvents(enabled: boolean, onRefused: () => void): { state: NodeState; live: boolean } {
  const [state, setState] = useState<NodeState>({});
  const [live, setLive] = useState(false);
  useEffect(() => {
    if (!enabled) return;
    const source = new EventSource(`/v1/events?utcOffsetMinutes=${-new Date().getTimezoneOffset()}&days=14`);
    for (const topic of ["provider", "earnings", "health", "connection"] as const) {
      source.addEventListener(topic, (e) => setState((s) => ({ ...s, [topic]: JSON.parse((e as MessageEvent).data) })));
    }
    source.onopen = () => setLive(true);
    source.onerror = () => {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) onRefused();
    };
    return () => source.close();
  }, [enabled]);
  return { state, live };
}

function App() {
  const [login, setLogin] = useState<Login>({ state: "checking" });
  const [tab, setTab] = useState<"provider" | "consumer">(location.pathname === "/consumer" ? "consumer" : "provider");
  const { state, live } = useNodeEvents(
    login.state === "in",
    () =>
      void api("GET", "/v1/services").then(
        // Still logged in: the stream failed for another reason; a new login check opens it again.
        () => setLogin({ state: "checking" }),
        () => setLogin({ state: "out", message: "The session ended (the node restarted, or it logged out)." }),
      ),
  );
  useEffect(() => {
    if (login.state === "checking") void logIn().then(setLogin);
  }, [login.state]);

  if (login.state === "checking") return <p class="page">Logging in…</p>;
  if (login.state === "out")
    return (
      <main class="page">
        <h1>myst node</h1>
        <p role="alert">{login.message}</p>
        <p>
          Run <code>myst ui</code> on the machine that runs the node and open the link it prints (each link works once, for 10 minutes).
        </p>
      </main>
    );
  const choose = (t: "provider" | "consumer") => {
    setTab(t);
    history.replaceState(null, "", t === "consumer" ? "/consumer" : "/");
  };
  return (
    <div class="page">
      <header class="top">
        <h1>myst node</h1>
        <span class="identity" title={login.identity}>
          {short(login.identity)}
        </span>
        <span class={live ? "badge ok" : "badge bad"} role="status">
          {live ? "live" : "reconnecting…"}
        </span>
        <nav aria-label="Screens" class="tabs">
          <button type="button" aria-pressed={tab === "provider"} onClick={() => choose("provider")}>
            Provider
          </button>
          <button type="button" aria-pressed={tab === "consumer"} onClick={() => choose("consumer")}>
            Consumer
          </button>
          <button type="button" onClick={() => void api("DELETE", "/v1/ui/session").finally(() => setLogin({ state: "out", message: "Logged out." }))}>
            Log out
          </button>
        </nav>
      </header>
      <main>{tab === "provider" ? <ProviderScreen identity={login.identity} state={state} /> : <ConsumerScreen state={state} />}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
