// Follow GET /v1/models/events: each model's state on each worker, then every change (load progress
// included). Unlike a token stream, this one carries Redis stream ids and honours Last-Event-ID, so
// EventSource's own reconnect is exactly right here; we only explain a refusal, which it cannot see.

import { streamProblem } from "./api.js";

const EVENTS_PATH = "/v1/models/events";

/**
 * Call onState(event) for each `model` event, and onNote(text, feed) when the live feed's health changes
 * (feed: "open", "reconnecting" or "off").
 */
export function followModelEvents(onState, onNote) {
  const source = new EventSource(EVENTS_PATH);
  source.addEventListener("open", () => onNote("", "open"));
  source.addEventListener("model", (e) => onState(JSON.parse(e.data)));
  source.addEventListener("error", async () => {
    if (source.readyState !== EventSource.CLOSED) {
      onNote("Live load progress: connection lost, reconnecting…", "reconnecting");
      return;
    }
    // Refused outright (a user key gets 403 here): EventSource has given up; say what the server said.
    const why = await streamProblem(EVENTS_PATH);
    onNote(`Live load progress is unavailable: ${why || "the stream closed"}`, "off");
  });
  return { close: () => source.close() };
}
