// One request's timeline: the steps each process recorded (GET /v1/requests/<id>/timeline), in order on
// one time axis that starts when the request was created, and its tokens over time. A request that has
// not ended is read again every second until it does.

import { getJSON } from "./api.js";
import { LineChart } from "./charts.js";
import { byId, fill, h, say } from "./dom.js";
import * as fmt from "./format.js";

const FINAL = new Set(["finished", "cancelled", "failed"]);
const LABELS = {
  submitted: "Submitted", queued: "Queued", claimed: "Claimed", admitted: "Admitted to a batch",
  first_token: "First token", requeued: "Requeued", finished: "Finished", cancelled: "Cancelled",
  failed: "Failed", cancel_asked: "Cancel asked",
};
// The phase a step begins, drawn as a band up to the next step that begins another.
const PHASES = { submitted: "waiting", queued: "waiting", requeued: "waiting", claimed: "claimed",
  admitted: "prefill", first_token: "decoding", resumed: "decoding", lost: "worker lost" };

let shownId = null;
let timer = null;
let chart = null;

export function show({ id }) {
  hide();
  shownId = id;
  byId("timeline-title").textContent = `Request ${id}`;
  say(byId("timeline-summary"), "loading…");
  say(byId("timeline-error"), "");
  fill(byId("timeline-track"));
  fill(byId("timeline-axis"));
  fill(byId("timeline-steps"));
  chart ??= new LineChart(byId("timeline-tokens"), { time: false });
  chart.set([], {});
  load(id);
}

export function hide() {
  clearTimeout(timer);
  timer = null;
  shownId = null;
}

async function load(id) {
  let data;
  try {
    data = await getJSON(`/v1/requests/${encodeURIComponent(id)}/timeline`);
  } catch (err) {
    if (id !== shownId) return;
    say(byId("timeline-error"), err.message);
    // The server away or failing (no status, 5xx): try again; a 4xx (unknown request, no access) stays.
    if (err.status === 0 || err.status >= 500) timer = setTimeout(() => load(id), 2000);
    else say(byId("timeline-summary"), "");
    return;
  }
  if (id !== shownId) return; // the user moved on while we waited
  say(byId("timeline-error"), "");
  render(data);
  if (!FINAL.has(data.status)) timer = setTimeout(() => load(id), 1000);
}

function render(data) {
  const t0 = data.created_at;
  const steps = data.steps;
  const isFinal = FINAL.has(data.status);
  // The axis ends at the last thing recorded (server clocks only: the browser's may differ).
  const end = Math.max(t0, ...steps.map((s) => s.at), ...data.tokens.map(([, at]) => at));
  const span = Math.max(end - t0, 1e-3);
  const summary = byId("timeline-summary");
  fill(summary, `model ${data.model} · created ${fmt.clock(t0)} · `,
    h("span", { class: `state-${data.status}`, dataset: { status: data.status } }, data.status),
    isFinal ? ` · ${fmt.seconds(end - t0)} in all` : " · refreshing every second");
  fill(byId("timeline-track"), bands(phaseMarks(steps, data.tokens), t0, end, span));
  fill(byId("timeline-axis"), ticks(span));
  fill(byId("timeline-steps"), steps.map((step) => stepItem(step, t0)));
  // Tokens over time: cumulative tokens against seconds since creation.
  let total = 0;
  const xs = [];
  const ys = [];
  for (const [, at, numTokens] of data.tokens) {
    total += numTokens;
    xs.push(at - t0);
    ys.push(total);
  }
  chart.set(xs, { tokens: ys });
}

/**
 * The steps plus two marks the tokens imply, for the bands only: a request handed to another worker
 * after its first token decodes again from the first token after its new admission (the marks
 * "resumed"), and the time between its last token and a requeue whose worker stopped is "worker lost".
 */
function phaseMarks(steps, tokens) {
  const times = tokens.map(([, at]) => at);
  const out = [];
  let started = false;
  for (const step of steps) {
    if (step.kind === "requeued" && step.reason === "its worker stopped") {
      const last = times.filter((at) => at <= step.at).pop();
      if (last !== undefined) out.push({ kind: "lost", at: last });
    }
    out.push(step);
    if (step.kind === "first_token") started = true;
    if (step.kind === "admitted" && started) {
      const next = times.find((at) => at >= step.at);
      if (next !== undefined) out.push({ kind: "resumed", at: next, worker: step.worker });
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

function bands(steps, t0, end, span) {
  const out = [];
  for (let i = 0; i < steps.length; i += 1) {
    const phase = PHASES[steps[i].kind];
    if (!phase) continue;
    let j = i + 1; // the band lasts until a step that starts another phase, or ends the request
    while (j < steps.length && (PHASES[steps[j].kind] === phase || steps[j].kind === "cancel_asked")) j += 1;
    const from = steps[i].at;
    const to = j < steps.length ? steps[j].at : end;
    const where = steps[i].worker ? ` on ${steps[i].worker}` : "";
    const band = h("div", { class: `band ${phase.replace(" ", "-")}`, title: `${phase}${where}: ${fmt.seconds(to - from)}` },
      h("span", {}, phase));
    band.style.left = `${(100 * (from - t0)) / span}%`; // CSSOM, which the CSP allows
    band.style.width = `${(100 * (to - from)) / span}%`;
    out.push(band);
    i = j - 1;
  }
  return out;
}

/** Five labels under the track: 0 s, a quarter, half and three quarters of the span, and its end. */
function ticks(span) {
  return [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const tick = h("span", { class: f === 1 ? "last" : "" }, `${(f * span).toFixed(span < 1 ? 3 : 1)} s`);
    tick.style.left = `${100 * f}%`;
    return tick;
  });
}

function stepItem(step, t0) {
  const { kind, at, worker, ...rest } = step;
  const details = Object.entries(rest)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => (k.endsWith("_s") ? `${k.slice(0, -2)} ${fmt.seconds(v)}` : `${k.replace(/_/g, " ")} ${v}`));
  return h("li", { dataset: { kind } },
    h("span", { class: "at" }, `+${(at - t0).toFixed(3)} s`),
    h("span", { class: "kind" }, LABELS[kind] || kind),
    h("span", {}, worker ? h("span", { class: "worker" }, worker) : null,
      worker && details.length ? " · " : null, details.join(" · ")));
}
