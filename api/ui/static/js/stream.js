// Follow one request's token stream (SSE) and survive a dropped connection without losing or doubling text.
//
// The server numbers a request's events (token ..., then done or error) and resumes a stream after any
// index with ?from=<index>. EventSource's own retry resends only the last id it saw in *its* connection
// and is invisible to us, so on any connection error we close it and open a new one ourselves from the
// last index we handed on. Events at or below that index are dropped, so a replay can never double text.

import { ApiError, getJSON } from "./api.js";

const RETRY_MS = [250, 500, 1000, 2000, 4000]; // back-off between reconnects; reset by each new token

/**
 * Follow request `id`; `on` gets token({index, text}), done({finish_reason, usage}), error(message),
 * queued({position, ...}) and reconnecting(attempt). Returns {close()} to stop following.
 */
export function followStream(id, on) {
  const base = `/v1/requests/${encodeURIComponent(id)}`;
  let lastIndex = -1; // the highest event index handed to `on`: a reconnect resumes after it
  let source = null;
  let timer = null;
  let failures = 0;
  let ended = false;

  function open() {
    const query = lastIndex >= 0 ? `?from=${lastIndex}` : "";
    source = new EventSource(`${base}/stream${query}`);
    source.addEventListener("queued", (e) => on.queued?.(JSON.parse(e.data)));
    source.addEventListener("token", (e) => {
      const event = JSON.parse(e.data);
      if (event.index <= lastIndex) return;
      lastIndex = event.index;
      failures = 0;
      on.token(event);
    });
    source.addEventListener("done", (e) => {
      const event = JSON.parse(e.data);
      stop();
      on.done(event);
    });
    source.addEventListener("error", (e) => {
      if (ended) return;
      if (e.data) {
        // The server's own `error` event: the request failed, and no reconnect will change that.
        stop();
        on.error(JSON.parse(e.data).message);
        return;
      }
      dropped();
    });
  }

  function dropped() {
    source.close(); // before EventSource retries on its own and replays from its own idea of the last id
    source = null;
    failures += 1;
    on.reconnecting?.(failures);
    timer = setTimeout(reconnect, RETRY_MS[Math.min(failures, RETRY_MS.length) - 1]);
  }

  async function reconnect() {
    timer = null;
    // EventSource cannot tell a refused stream (404, 401) from a network drop: ask the request itself.
    try {
      await getJSON(base);
    } catch (err) {
      if (ended) return;
      const isFinal = err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429;
      if (isFinal) {
        stop();
        on.error(err.message);
        return;
      }
      failures += 1; // the server is away: keep trying, more slowly
      on.reconnecting?.(failures);
      timer = setTimeout(reconnect, RETRY_MS[Math.min(failures, RETRY_MS.length) - 1]);
      return;
    }
    if (!ended) open();
  }

  function stop() {
    ended = true;
    clearTimeout(timer);
    source?.close();
    source = null;
  }

  open();
  return {
    close: stop,
    get lastIndex() {
      return lastIndex;
    },
  };
}
