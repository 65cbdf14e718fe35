// The Models page: every known model (GET /v1/models), Load and Unload (admin-only: a user key's 403 is
// shown as the server words it), a progress bar per worker fed live by the model events stream, a log
// of recent events, and the Hub search. Rows are updated in place, so a focused button keeps its focus.

import { getJSON, postJSON } from "./api.js";
import { byId, h, say } from "./dom.js";
import { wireHub } from "./hub.js";
import { followModelEvents } from "./model_events.js";
import * as fmt from "./format.js";

const MAX_LOG = 40;
const rows = new Map(); // model → {tr, cells, bars: Map(worker → {item, bar, label})}
const states = new Map(); // model → Map(worker → the newest ModelState we know)
let feed = null;
let poll = null;
let refreshSoon = null;
let wired = false;
let asked = null; // the last Load or Unload clicked on this page: {model, hasEnded}
const UNLOAD_PENDING = "unload requested"; // the stage of an unload not yet carried out (shared/messages)

export function show() {
  if (!wired) wire();
  refresh();
  feed = followModelEvents(onState, (note, health) => {
    const live = byId("models-live");
    say(live, note);
    live.dataset.feed = health; // "open" once every later change will reach this page
  });
  poll = setInterval(refresh, 5000); // queue depths change without a model event
}

export function hide() {
  feed?.close();
  delete byId("models-live").dataset.feed;
  feed = null;
  clearInterval(poll);
}

function wire() {
  wired = true;
  byId("load-form").addEventListener("submit", (e) => {
    e.preventDefault();
    load(byId("load-model").value.trim(), Number(byId("load-workers").value) || 1);
  });
  wireHub((id) => {
    byId("load-model").value = id;
    load(id, Number(byId("load-workers").value) || 1);
  });
}

async function load(model, workers) {
  if (!model) return;
  const mine = { model, hasEnded: false };
  asked = mine;
  const status = byId("models-status");
  say(status, `asking ${workers} worker(s) to load ${model}…`);
  try {
    const body = await postJSON("/v1/models/load", { model, workers });
    // A quick load's last event can arrive before this answer: then the status already says how it ended.
    if (!mine.hasEnded) say(status, `${body.model}: loading on ${body.workers.join(", ")}`);
  } catch (err) {
    say(status, `Load ${model}: ${err.message}`);
  }
  refresh();
}

async function unload(model) {
  const mine = { model, hasEnded: false };
  asked = mine;
  const status = byId("models-status");
  try {
    const body = await postJSON("/v1/models/unload", { model });
    if (!mine.hasEnded) say(status, `${body.model}: unloading on ${body.workers.join(", ") || "no worker"}`);
  } catch (err) {
    say(status, `Unload ${model}: ${err.message}`);
  }
  refresh();
}

async function refresh() {
  let data;
  try {
    const body = await getJSON("/v1/models");
    data = [...body.data, ...(body.history || [])]; // the callable models, then the failed and unloaded
  } catch (err) {
    say(byId("models-status"), err.message);
    return;
  }
  for (const info of data) {
    forgetGone(info);
    for (const state of info.per_worker || []) remember(state);
    update(info);
  }
  for (const [model, row] of rows) {
    if (!data.some((m) => m.id === model)) {
      row.tr.remove();
      rows.delete(model);
    }
  }
}

function onState(event) {
  remember(event);
  logEvent(event);
  // The line under the form follows the model last loaded or unloaded here to where it ends up.
  const isEnd = ["ready", "failed", "unloaded"].includes(event.state) && event.stage !== UNLOAD_PENDING;
  if (event.model === asked?.model && isEnd) {
    asked.hasEnded = true;
    const reason = event.reason ? `: ${event.reason}` : "";
    say(byId("models-status"), `${event.model}: ${event.state} on ${event.worker_id}${reason}`);
  }
  const row = rows.get(event.model);
  if (row) drawWorkers(event.model, row);
  clearTimeout(refreshSoon); // the overall state and worker list follow from several events: read once
  refreshSoon = setTimeout(refresh, 300);
}

/** Drop the bars of workers that stopped: per_worker lists only live workers. */
function forgetGone(info) {
  const live = new Set((info.per_worker || []).map((s) => s.worker_id));
  const known = states.get(info.id);
  for (const worker of known?.keys() || []) if (!live.has(worker)) known.delete(worker);
  const row = rows.get(info.id);
  for (const [worker, entry] of row?.bars || []) {
    if (!live.has(worker)) {
      entry.item.remove();
      row.bars.delete(worker);
    }
  }
}

function remember(state) {
  if (!states.has(state.model)) states.set(state.model, new Map());
  const known = states.get(state.model).get(state.worker_id);
  if (!known || known.updated_at <= state.updated_at) states.get(state.model).set(state.worker_id, state);
}

function update(info) {
  let row = rows.get(info.id);
  if (!row) {
    row = newRow(info.id);
    rows.set(info.id, row);
    byId("models-rows").append(row.tr);
  }
  const { tr, cells } = row;
  tr.dataset.state = info.state;
  cells.state.className = `state-${info.state}`;
  say(cells.state, info.state);
  say(cells.workers, info.workers.join(", ") || "–");
  say(cells.queued, String(info.queued));
  say(cells.stage, info.reason ? `${info.stage}: ${info.reason}` : info.stage);
  row.unload.disabled = !["ready", "loading"].includes(info.state);
  drawWorkers(info.id, row);
}

function newRow(model) {
  const cell = (attrs = {}) => h("td", attrs);
  const cells = { state: cell(), workers: cell({ class: "mono" }), queued: cell({ class: "num" }),
    progress: cell(), stage: cell() };
  const loadButton = h("button", { type: "button", "aria-label": `Load ${model}`,
    onclick: () => load(model, Number(byId("load-workers").value) || 1) }, "Load");
  const unloadButton = h("button", { type: "button", "aria-label": `Unload ${model}`, onclick: () => unload(model) },
    "Unload");
  const tr = h("tr", { dataset: { model } }, h("td", {}, h("code", {}, model)), cells.state, cells.workers,
    cells.queued, cells.progress, cells.stage, h("td", {}, h("div", { class: "actions" }, loadButton, unloadButton)));
  cells.progress.append(h("div", { class: "per-worker" }));
  return { tr, cells, unload: unloadButton, bars: new Map() };
}

/** One bar per worker that has loaded, is loading or failed to load this model. */
function drawWorkers(model, row) {
  const box = row.cells.progress.firstChild;
  for (const [worker, state] of states.get(model) || []) {
    let entry = row.bars.get(worker);
    if (!entry) {
      const bar = h("progress", { max: 100, value: 0, "aria-label": `${model} on ${worker}`,
        dataset: { model, worker } });
      const label = h("span");
      entry = { item: h("div", {}, h("span", { class: "mono" }, worker), bar, " ", label), bar, label };
      row.bars.set(worker, entry);
      box.append(entry.item);
    }
    entry.bar.value = state.progress;
    entry.bar.dataset.state = state.state;
    say(entry.label, state.state === "loading" ? `${Math.round(state.progress)}%` : state.state);
  }
}

function logEvent(event) {
  const log = byId("models-log");
  const at = fmt.clock(event.updated_at || Date.now() / 1000);
  const stage = event.stage && event.stage !== event.state ? ` · ${event.stage}` : "";
  const text = `${at} ${event.model} · ${event.worker_id} · ${event.state}${stage} · ` +
    `${Math.round(event.progress)}%${event.reason ? ` · ${event.reason}` : ""}`;
  log.prepend(h("li", { dataset: { state: event.state, progress: String(event.progress) } }, text));
  while (log.children.length > MAX_LOG) log.lastChild.remove();
}
