// Hub search on the Models page: GET /v1/models/search. The server answers 503 with its reason when it
// cannot reach the Hub (an offline cluster); that reason is shown as it is. Whether a model fits is not
// guessed here: the page knows no worker's free memory, and the worker checks it at load time.

import { getJSON } from "./api.js";
import { byId, fill, h, say } from "./dom.js";
import * as fmt from "./format.js";

const LIMIT = 20;

/** Wire the search form; `onLoad(modelId)` is called by a result's Load button. */
export function wireHub(onLoad) {
  const form = byId("hub-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const query = byId("hub-query").value.trim();
    if (query) search(query, onLoad, form.querySelector("button"));
  });
}

async function search(query, onLoad, button) {
  const error = byId("hub-error");
  const table = byId("hub-table");
  say(error, "");
  button.disabled = true;
  button.textContent = "Searching…";
  try {
    const { models } = await getJSON(`/v1/models/search?q=${encodeURIComponent(query)}&limit=${LIMIT}`);
    fill(byId("hub-rows"), models.map((m) => row(m, onLoad)));
    table.hidden = models.length === 0;
    if (!models.length) say(error, `No model on the Hub matches “${query}”.`);
  } catch (err) {
    table.hidden = true;
    say(error, err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Search";
  }
}

function row(model, onLoad) {
  return h("tr", { dataset: { model: model.id } },
    h("td", {}, h("code", {}, model.id)),
    h("td", {}, model.pipeline_tag || "–"),
    h("td", { class: "num", title: model.parameters ? String(model.parameters) : "" }, fmt.count(model.parameters)),
    h("td", { class: "num" }, fmt.bytes(model.size_bytes)),
    h("td", { class: "num" }, fmt.count(model.downloads)),
    h("td", { class: "num" }, fmt.count(model.likes)),
    h("td", {}, h("button", { type: "button", "aria-label": `Load ${model.id}`, onclick: () => onLoad(model.id) },
      "Load")));
}
