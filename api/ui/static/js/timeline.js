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
  failed: "Failed", cancel_asked: "Cancel asked", draining: "Worker draining",
};
// The phase a step begins, drawn as a band up to the next step that begins another.
const PHASES = { submitted: "waiting", queued: "waiting", requeued: "waiting", claimed: "claimed",
  admitted: "prefill", first_token: "decoding", resumed: "decoding", draining: "draining",
  lost: "worker lost", stopped: "worker stopped" };

let shownId = null;
let timer = null;
let chart = null;
let resized = null; // the track's width decides which band names fit

export function show({ id }) {
  hide();
  shownId = id;
  byId("timeline-title").textContent = `Request ${id}`;
  say(byId("timeline-summary"), "loading…");
  say(byId("timeline-error"), "");
  fill(byId("timeline-track"));
  fill(byId("timeline-axis"));
  fill(byId("timeline-legend"));
  fill(byId("timeline-steps"));
  resized ??= new ResizeObserver(fitLabels);
  resized.observe(byId("timeline-track"));
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
  // In the order they happened: steps come from several processes (the server sorts them too).
  const steps = [...data.steps].sort((a, b) => a.at - b.at);
  const isFinal = FINAL.has(data.status);
  // The axis ends at the last thing recorded (server clocks only: the browser's may differ).
  const end = Math.max(t0, ...steps.map((s) => s.at), ...data.tokens.map(([, at]) => at));
  const span = Math.max(end - t0, 1e-3);
  const summary = byId("timeline-summary");
  fill(summary, `model ${data.model} · created ${fmt.clock(t0)} · `,
    h("span", { class: `state-${data.status}`, dataset: { status: data.status } }, data.status),
    isFinal ? ` · ${fmt.seconds(end - t0)} in all` : " · refreshing every second");
  const drawn = bands(phaseMarks(steps, data.tokens), t0, end, span);
  fill(byId("timeline-track"), drawn);
  fitLabels();
  fill(byId("timeline-legend"), legend(drawn));
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
 * The steps plus marks the tokens imply, for the bands only: a request handed to another worker after
 * its first token decodes again from the first token after its new admission (the mark "resumed"); when
 * a requeue says its worker stopped, the time from that worker's last token to the requeue is "worker
 * stopped" if the worker had said it was stopping (a "draining" step: a shutdown that did not hand the
 * request back, such as the whole server stopping), else "worker lost" (it died or lost Redis).
 */
function phaseMarks(steps, tokens) {
  const times = tokens.map(([, at]) => at);
  const out = [];
  let started = false;
  let drainingAt = null; // when the worker holding the request said it was stopping
  for (const step of steps) {
    if (step.kind === "claimed") drainingAt = null;
    if (step.kind === "draining") drainingAt = step.at;
    if (step.kind === "requeued" && step.reason === "its worker stopped") {
      const last = times.filter((at) => at <= step.at).pop();
      if (drainingAt !== null) out.push({ kind: "stopped", at: Math.max(last ?? drainingAt, drainingAt) });
      else if (last !== undefined) out.push({ kind: "lost", at: last });
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
    const band = h("div", { class: `band ${phase.replace(" ", "-")}`, title: `${phase}${where}: ${fmt.seconds(to - from)}`,
      dataset: { phase } }, h("span", {}, phase));
    band.style.left = `${(100 * (from - t0)) / span}%`; // CSSOM, which the CSP allows
    band.style.width = `${(100 * (to - from)) / span}%`;
    out.push(band);
    i = j - 1;
  }
  return out;
}

/** A band's name shows inside it only where it fits whole; the legend names every colour anyway. */
function fitLabels() {
  for (const label of byId("timeline-track").querySelectorAll(".band span")) {
    label.hidden = false;
    label.hidden = label.offsetLeft + label.offsetWidth > label.parentElement.clientWidth - 2;
  }
}

/** One swatch per phase drawn, in order of first appearance. */
function legend(drawn) {
  const phases = [...new Set(drawn.map((band) => band.dataset.phase))];
  return phases.map((phase) => h("li", { dataset: { phase } },
    h("span", { class: `swatch band ${phase.replace(" ", "-")}` }), phase));
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
