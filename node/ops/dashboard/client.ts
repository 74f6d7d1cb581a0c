import type { Static } from "@sinclair/typebox";
import { queryString, type Requester } from "../../http/requester";
import type * as S from "./schemas";

/** One server-sent event: its topic and its value (the shape of the topic's REST route). */
export interface NodeEvent {
  event: S.Topic;
  data: unknown;
}

/** What a client follows the event stream with: the events in order, until `signal` aborts or the stream ends. */
export interface EventSource {
  follow(path: string, signal: AbortSignal): AsyncIterable<string>;
}

/** Splits a `text/event-stream` into events (`event:` and `data:` lines; comments and `id:`/`retry:` skipped). */
export async function* parseEvents(chunks: AsyncIterable<string>): AsyncGenerator<NodeEvent> {
  let buffer = "";
  for await (const chunk of chunks) {
    buffer += chunk;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (event && data.length) yield { event: event as S.Topic, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** The dashboard's routes a client uses: a login link, and the event stream. */
export const dashboardActions = (api: Requester, source: EventSource) => ({
  /** A one-time login link to the dashboard (a daemon's). */
  loginLink: () => api.post<Static<typeof S.LoginLink>>("/v1/ui/login-link", {}),
  /** The node's events (`/v1/events`) of these topics, as they change, until `signal` aborts. */
  events: (query: Partial<Static<typeof S.EventsQuery>>, signal: AbortSignal) => parseEvents(source.follow(`/v1/events${queryString(query)}`, signal)),
});
