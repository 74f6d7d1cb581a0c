import type { NodeClient } from "../api/client";
import type { Output } from "./output";

type View = Awaited<ReturnType<NodeClient["reachability"]>>;

/** How the running node can be reached; undefined when no node runs or it measures nothing (no STUN servers set). */
export async function reachabilityOf(node: NodeClient | null): Promise<View | undefined> {
  const view = node ? await node.reachability() : undefined;
  return view?.state === "not-measured" ? undefined : view;
}

/** Adds the node's reachability to a command's result: one line in words, the whole view with --json. */
export function withReachability(out: Output, view: View | undefined): Output {
  if (!view) return out;
  const contacts = view.contacts.map((c) => `${c.kind} ${c.address}:${c.port}/${c.protocol}`);
  return {
    ...out,
    result: (data, human) =>
      out.result({ ...(data as object), reachability: view }, () => [
        ...human(),
        `reachable: ${view.summary}`,
        ...(contacts.length > 0 ? [`contacts: ${contacts.join(", ")}`] : []),
      ]),
  };
}
