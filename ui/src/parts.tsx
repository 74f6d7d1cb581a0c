import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

/** A titled part of a screen; its heading names it for screen readers. */
export function Section(props: { id: string; title: string; children: ComponentChildren }) {
  return (
    <section class="card" aria-labelledby={`${props.id}-title`} id={props.id}>
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** Runs one action at a time and keeps its error to show (the node's own message, never a stack). */
export function useAction(): { busy: boolean; error: string | null; run: (f: () => Promise<unknown>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}

export function ErrorLine(props: { error: string | null }) {
  return props.error ? (
    <p class="error" role="alert">
      {props.error}
    </p>
  ) : null;
}

export function Field(props: { label: string; children: ComponentChildren; hint?: string }) {
  return (
    // biome-ignore lint/a11y/noLabelWithoutControl: the control is the label's child (implicit association); the browser test finds every control by its label
    <label class="field">
      <span>{props.label}</span>
      {props.children}
      {props.hint ? <small>{props.hint}</small> : null}
    </label>
  );
}

export function Dot(props: { ok: boolean | null }) {
  return <span class={props.ok === null ? "dot unknown" : props.ok ? "dot ok" : "dot bad"} aria-hidden="true" />;
}
