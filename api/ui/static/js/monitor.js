// Workers and monitoring: once a second, GET /v1/workers and GET /status (both admin-only) become a point
// on four live charts (tokens/s per worker, queue depth per model, batch slots, TTFT p50/p99) and a worker
// table. Reads are chained, never overlapped: a slow answer delays the next point instead of piling up.
// A key that may not read them (403) sees the server's message alone, not empty chart frames under it.

import { getJSON } from "./api.js";
import { LineChart } from "./charts.js";
import { byId, fill, h, say } from "./dom.js";
import * as fmt from "./format.js";

const PERIOD_MS = 1000;
let charts = null;
let timer = null;
let running = false;

export function show() {
  charts ??= {
    tokens: new LineChart(byId("chart-tokens")),
    queue: new LineChart(byId("chart-queue")),
    slots: new LineChart(byId("chart-slots")),
    ttft: new LineChart(byId("chart-ttft")),
  };
  running = true;
  tick();
}

export function hide() {
  running = false;
  clearTimeout(timer);
}

async function tick() {
  if (!running) return;
  try {
    const [{ workers }, status] = await Promise.all([getJSON("/v1/workers"), getJSON("/status")]);
    if (!running) return;
    say(byId("monitor-error"), "");
    showDenied(false);
    draw(workers, status);
  } catch (err) {
    say(byId("monitor-error"), err.message);
    if (err.status === 403 || err.status === 401) {
      showDenied(true);
      return; // needs an admin key: polling cannot fix that
    }
  }
  if (running) timer = setTimeout(tick, PERIOD_MS);
}

/** A key that may not read the Monitor sees the server's message alone: no empty summary or chart frames. */
function showDenied(isDenied) {
  byId("monitor-summary").hidden = isDenied;
  byId("monitor-body").hidden = isDenied;
}

/** Flower's address from the server's settings: FLOWER_URL, else FLOWER_PORT on the host this page came from. */
function showFlower({ url, port }) {
  const link = byId("flower-link");
  const href = url || `${location.protocol}//${location.hostname}:${port}/`;
  if (link.getAttribute("href") === href) return;
  link.href = href;
  link.textContent = `Flower at ${href.replace(/^https?:\/\//, "").replace(/\/$/, "")}`;
}

function draw(workers, status) {
  showFlower(status.flower);
  const now = Date.now() / 1000;
  charts.tokens.push(now, Object.fromEntries(workers.map((w) => [w.worker_id, w.tokens_per_s])));
  charts.queue.push(now, status.queue_depth);
  charts.slots.push(now, { used: status.workers.slots_used, free: status.workers.slots_free });
  const ttft = {};
  for (const [model, p] of Object.entries(status.ttft_ms)) {
    ttft[`${model} p50`] = p.p50;
    ttft[`${model} p99`] = p.p99;
  }
  charts.ttft.push(now, ttft);
  const w = status.workers;
  say(byId("monitor-summary"), `${w.total} worker(s): ${w.ready} ready, ${w.loading} loading, ${w.idle} idle · ` +
    `${w.slots_used} of ${w.slots_used + w.slots_free} batch slots in use · ${fmt.rate(w.tokens_per_s)} in all`);
  fill(byId("monitor-workers"), workers.map((x) => h("tr", { dataset: { worker: x.worker_id } },
    h("td", {}, h("code", {}, x.worker_id)),
    h("td", { class: `state-${x.state}` }, x.state),
    h("td", {}, x.model || "–"),
    h("td", {}, x.device ? `${x.device} (${x.dtype})` : "–"), // idle: no model, so no device in use
    h("td", { class: "num" }, `${x.slots_used} / ${x.slots_used + x.slots_free}`),
    h("td", { class: "num" }, fmt.rate(x.tokens_per_s)))));
}
