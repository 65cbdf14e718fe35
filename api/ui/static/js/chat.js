// The chat playground. POST /v1/chat/completions cannot be resumed, so the conversation is rendered here
// into one prompt, in the same `role: content` lines the server's fallback chat template uses, and sent
// to POST /v1/requests, whose stream stream.js follows and resumes. Tokens are appended as text nodes:
// nothing already shown is laid out again, and the answer box only grows at its end.

import { del, getJSON, postJSON } from "./api.js";
import { answerFacts } from "./answer_facts.js";
import { byId, fill, h, isAtBottom, say } from "./dom.js";
import { followStream } from "./stream.js";

const turns = []; // the finished conversation, {role, content}, rendered into the next prompt
let active = null; // the answer being generated: its elements, request id, stream, text shown so far
let wired = false;

const el = {};

export function show() {
  if (!wired) wire();
  loadModels();
}

export function hide() {} // an answer keeps streaming while another view is open

function wire() {
  wired = true;
  for (const id of ["chat-model", "chat-temperature", "chat-top-p", "chat-max-tokens", "chat-seed",
    "chat-ignore-eos", "chat-log", "chat-form", "chat-input", "chat-send", "chat-stop", "chat-status"]) {
    el[id.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = byId(id);
  }
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  el.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && active && !byId("view-chat").hidden) stop();
  });
  el.stop.addEventListener("click", stop);
  byId("chat-clear").addEventListener("click", () => {
    if (active) {
      // Forget the answer at once; its request is cancelled, and nothing of it reaches the new chat.
      if (active.id) cancel(active.id);
      active.stream?.close();
      active = null;
      setBusy(false);
    }
    turns.length = 0;
    fill(el.log);
    el.input.focus();
  });
}

async function loadModels() {
  try {
    const { data } = await getJSON("/v1/models");
    const chosen = el.model.value;
    const ready = data.filter((m) => m.state === "ready");
    const label = (m) => (m.state === "ready" ? m.id : `${m.id} (${m.state})`);
    fill(el.model, data.map((m) => h("option", { value: m.id }, label(m))));
    el.model.value = data.some((m) => m.id === chosen) ? chosen : (ready[0] || data[0] || {}).id || "";
    say(el.status, data.length ? "" : "No model is known yet: load one on the Models page.");
  } catch (err) {
    say(el.status, err.message);
  }
}

function sampling() {
  const number = (input) => (input.value === "" ? undefined : Number(input.value));
  return {
    temperature: number(el.temperature),
    top_p: number(el.topP),
    max_new_tokens: number(el.maxTokens),
    seed: number(el.seed),
    ignore_eos: el.ignoreEos.checked,
  };
}

/** The prompt for the conversation so far plus the reply to come (see shared/chat_template.py). */
function prompt() {
  return `${turns.map((t) => `${t.role}: ${t.content}\n`).join("")}assistant:`;
}

async function send() {
  const content = el.input.value.trim();
  if (!content || active) return;
  turns.push({ role: "user", content });
  const atBottom = isAtBottom(el.log);
  el.log.append(h("li", { class: "msg user" }, h("span", { class: "role" }, "you"),
    h("p", { class: "text" }, content)));
  // The answer's status sits beside its label and its facts stay hidden until it ends: while it streams,
  // nothing lies below its text, so growing text moves nothing.
  const live = h("span", { class: "live" }, "sending…");
  const text = h("p", { class: "text" });
  const meta = h("p", { class: "meta", hidden: true });
  const item = h("li", { class: "msg assistant", dataset: { state: "waiting" } },
    h("div", { class: "head" }, h("span", { class: "role" }, "assistant"), live), text, meta);
  el.log.append(item);
  if (atBottom) el.log.scrollTop = el.log.scrollHeight;
  el.input.value = "";
  const answer = { item, live, text, meta, id: null, stream: null, stopAsked: false, shown: "" };
  active = answer;
  setBusy(true);
  let sub;
  try {
    const body = { prompt: prompt(), model: el.model.value || undefined, ...sampling() };
    sub = await postJSON("/v1/requests", body);
  } catch (err) {
    if (active !== answer) return; // a new chat began meanwhile
    turns.pop(); // the next prompt must not hold a question that was never answered
    end(answer, "error", err.message);
    return;
  }
  if (active !== answer) {
    cancel(sub.id); // a new chat began while this was being submitted
    return;
  }
  answer.id = sub.id;
  item.dataset.requestId = sub.id;
  if (answer.stopAsked) cancel(sub.id);
  say(live, "queued…");
  answer.stream = followStream(sub.id, {
    queued: (q) => say(live, `queued: position ${q.position}${q.reason ? ` (${q.reason})` : ""}`),
    token: (event) => appendToken(answer, event.text),
    reconnecting: (n) => say(live, `connection lost: resuming after event ${answer.stream.lastIndex} (try ${n})…`),
    done: (event) => end(answer, event.finish_reason === "cancelled" ? "cancelled" : "done", null, event),
    error: (message) => end(answer, "error", message),
  });
}

function appendToken(answer, chunk) {
  if (!chunk) return;
  const atBottom = isAtBottom(el.log);
  answer.item.dataset.state = "streaming";
  answer.text.append(document.createTextNode(chunk));
  answer.shown += chunk;
  if (answer.live.textContent !== "streaming…" && !answer.stopAsked) say(answer.live, "streaming…");
  if (atBottom) el.log.scrollTop = el.log.scrollHeight;
}

function end(answer, state, message, done) {
  const { item, live, meta, id, shown } = answer;
  if (active === answer) active = null;
  setBusy(false);
  item.dataset.state = state;
  if (done) item.dataset.finishReason = done.finish_reason;
  if (id && state !== "error") turns.push({ role: "assistant", content: shown });
  say(live, "");
  const atBottom = isAtBottom(el.log);
  meta.hidden = false;
  if (state === "error") {
    fill(meta, h("span", { class: "end" }, message), id ? h("span", { class: "sep" }, "·") : null,
      id ? h("a", { href: `/ui/requests/${id}` }, "timeline") : null);
  } else {
    say(meta, state === "cancelled" ? "cancelled" : "finished");
    answerFacts(id, meta, state);
  }
  if (atBottom) el.log.scrollTop = el.log.scrollHeight;
  el.input.focus();
}

function stop() {
  if (!active) return;
  active.stopAsked = true;
  say(active.live, "stopping…");
  if (active.id) cancel(active.id);
}

async function cancel(id) {
  try {
    await del(`/v1/requests/${id}`); // the stream then ends with a done event, finish_reason "cancelled"
  } catch (err) {
    if (err.status !== 409) say(el.status, err.message); // 409: it had already ended by itself
  }
}

function setBusy(busy) {
  el.send.disabled = busy;
  el.stop.disabled = !busy;
}
