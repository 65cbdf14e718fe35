// The line under a finished answer: time to first token, decode speed, the worker that served it and the
// largest batch it shared, read from GET /v1/requests/<id> once the stream has ended, plus its timeline.

import { getJSON } from "./api.js";
import { fill, h } from "./dom.js";
import * as fmt from "./format.js";

const FINAL = new Set(["finished", "cancelled", "failed"]);

/** Fill `meta` with the facts of request `id`, which ended as `state` (done or cancelled). */
export async function answerFacts(id, meta, state) {
  let record = null;
  // The done event can reach us a moment before the worker's final record is readable: ask a few times.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try {
      record = await getJSON(`/v1/requests/${id}`);
    } catch (err) {
      fill(meta, h("span", { class: "end" }, state), sep(), err.message, sep(), timelineLink(id));
      return;
    }
    if (FINAL.has(record.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  fill(meta, ...facts(record, state).flatMap((part, i) => (i ? [sep(), part] : [part])), sep(), timelineLink(id));
}

function facts(record, state) {
  const { timings = {}, usage } = record;
  const tokens = usage?.completion_tokens ?? 0;
  // Decode speed: tokens after the first, over the time after the first (the first waits for prefill).
  const decodeS = (timings.total_s ?? 0) - (timings.ttft_s ?? 0);
  const perSecond = tokens > 1 && decodeS > 0 ? (tokens - 1) / decodeS : null;
  const ending = state === "cancelled" ? "cancelled" : `${record.finish_reason || record.status}`;
  return [
    h("span", { class: "end", dataset: { fact: "end" } }, `${ending}, ${tokens} tokens`),
    h("span", { dataset: { fact: "ttft" } }, `first token ${fmt.seconds(timings.ttft_s)}`),
    h("span", { dataset: { fact: "rate" } }, fmt.rate(perSecond)),
    h("span", { dataset: { fact: "worker" } }, "worker ", h("code", {}, record.worker_id || "–")),
    h("span", { dataset: { fact: "batch" } }, `largest batch ${record.largest_batch ?? "–"}`),
  ];
}

function sep() {
  return h("span", { class: "sep", "aria-hidden": "true" }, "·");
}

function timelineLink(id) {
  return h("a", { href: `/ui/requests/${id}` }, "timeline");
}
