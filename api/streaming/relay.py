"""Follow a request's event stream in Redis and turn it into SSE or WebSocket messages.

A relay sends every event after the index the client last saw, then live events as the
worker writes them, with nothing buffered in between. While the request waits for a
worker it sends `queued` updates; when idle it sends heartbeats. Once a second it asks whether the
subscriber's credential still stands (a revoked key's streams end there, with a `key_revoked` error).
"""

from __future__ import annotations

import contextlib
import json
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Response

from api.generation.queue import queue_info
from api.streaming import sse
from api.streaming.fanout import StreamFanout, Tagged
from api.streaming.stopping import RECONNECT, is_stopping, reconnect_message
from api.telemetry import RELAY_LAG, STREAMS_OPEN
from shared import bus, lifecycle, timeline
from shared.messages import GenerationRequest, StreamEvent, TokenEvent
from shared.settings import Settings

IDLE_TICK_S = 1.0  # with no event for this long the relay checks the request and may send a heartbeat
RECHECK_S = 1.0  # how often a stream asks again whether its subscriber's key or session still stands


class StreamGone(Exception):
    """The stream cannot go on: the request's record vanished, or it ended before the index the
    subscriber has (Redis lost its tail). The message says which, for the client."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code

    def payload(self) -> dict[str, str]:
        """The error message a client gets."""
        return {"message": self.message, **({"code": self.code} if self.code else {})}


def revoked() -> StreamGone:
    """The end of a stream whose key was revoked, or whose session closed or expired."""
    return StreamGone("the API key (or session) of this stream was revoked or has expired", "key_revoked")


def follow(fanout: StreamFanout, request_id: str, after_index: int = -1) -> Iterator[StreamEvent | None]:
    """Yield events after `after_index` until the done or error event; None after each idle second."""
    for tagged in follow_many(fanout, [request_id], after_index):
        yield None if tagged is None else tagged[1]


def follow_many(
    fanout: StreamFanout, request_ids: list[str], after_index: int = -1
) -> Iterator[Tagged | None]:
    """Several streams merged: (position in request_ids, event) until every stream has ended;
    None after each idle second."""
    merged: queue.Queue[Tagged] = queue.Queue()
    subs = [fanout.subscribe(rid, after_index, tag, merged) for tag, rid in enumerate(request_ids)]
    open_streams = len(subs)
    STREAMS_OPEN.inc()
    try:
        while open_streams:
            got = subs[0].get(timeout_s=IDLE_TICK_S)  # every subscription reads the same queue
            if not got:
                yield None
                continue
            for tag, event in got:
                if isinstance(event, TokenEvent) and event.at is not None:
                    RELAY_LAG.observe(max(0.0, time.time() - event.at))
                yield tag, event
                if event.type != "token":
                    open_streams -= 1
    finally:
        STREAMS_OPEN.dec()
        for sub in subs:
            fanout.unsubscribe(sub)


@dataclass
class Relay:
    """One subscriber's view of one request: events, `queued` updates and heartbeats, in order."""

    r: redis.Redis
    fanout: StreamFanout
    request: GenerationRequest
    settings: Settings
    after_index: int = -1
    is_complete: bool = False  # the last event was sent: a disconnect after this is no cancellation
    # Whether the subscriber's credential still stands (None: keys are off, nothing to check).
    is_allowed: Callable[[], bool] | None = None
    _checked_at: float = field(default=0.0, init=False)
    is_released: bool = False  # this API process is stopping and told the client where to resume

    def messages(self) -> Iterator[tuple[str, Any]]:
        """Yield ("event", StreamEvent), ("queued", info), ("heartbeat", None), or ("tick", None) after an
        idle second with nothing to send (a WebSocket checks its peer then); raises StreamGone. When this
        API process stops, the last is ("reconnect", where to resume)."""
        rid = self.request.request_id
        last_queued = None
        last_sent = time.monotonic()
        for event in self._with_first_tick(follow(self.fanout, rid, self.after_index)):
            if is_stopping():
                self.is_released = True
                yield RECONNECT, reconnect_message(f"/v1/requests/{rid}/stream", self.after_index)
                return
            now = time.monotonic()
            # A revocation cancels the key's requests: their final event is checked at once, so the
            # stream ends with key_revoked rather than a plain cancellation.
            self._check_access(now, is_final=event is not None and event.type != "token")
            if event is not None:
                last_sent = now
                self.after_index = event.index
                if event.type != "token":
                    self.is_complete = True
                yield "event", event
                continue
            try:
                stored = bus.load_request(self.r, rid)
                if stored is None:
                    raise StreamGone(gone_message(self.request, self.settings))
                if stored.state.status.is_final and bus.last_index(self.r, rid) <= self.after_index:
                    # It ended, yet nothing past what this subscriber has will come: Redis lost the end.
                    raise StreamGone(
                        f"request {rid} ended ({stored.state.status.value}) but its stream lost the events "
                        f"after index {bus.last_index(self.r, rid)} in a Redis restart"
                    )
                is_queued = stored.state.status == "queued"
                queued = queue_info(self.r, self.request, self.settings) if is_queued else None
            except redis.RedisError:
                queued = None  # Redis is away: keep the stream open (the fanout retries), heartbeats flow
            if queued is not None and queued != last_queued:
                if last_queued is None or queued["position"] != last_queued["position"]:
                    self._note_position(queued)
                last_queued, last_sent = queued, now
                yield "queued", queued
            elif now - last_sent >= self.settings.sse_heartbeat_s:
                last_sent = now
                yield "heartbeat", None
            else:
                yield "tick", None

    def _check_access(self, now: float, is_final: bool) -> None:
        """Raise StreamGone (key_revoked) once the subscriber's credential no longer stands; asks Redis
        at most once a RECHECK_S, and before a final event."""
        if self.is_allowed is None or not (is_final or now - self._checked_at >= RECHECK_S):
            return
        self._checked_at = now
        try:
            allowed = self.is_allowed()
        except redis.RedisError:
            return  # Redis is away: the stream waits for it as it does for events
        if not allowed:
            raise revoked()

    def _note_position(self, queued: dict[str, Any]) -> None:
        """A new queue position goes into the request's timeline (informational: failures are ignored)."""
        with contextlib.suppress(redis.RedisError):
            timeline.record(
                self.r, self.request.request_id, "queued", self.settings.stream_ttl_s,
                position=queued["position"], waiting_for_worker=queued.get("reason"),
            )  # fmt: skip

    @staticmethod
    def _with_first_tick(events: Iterator[StreamEvent | None]) -> Iterator[StreamEvent | None]:
        # A tick before the first read: a queued request reports its position at once.
        yield None
        yield from events

    def cancel_if_abandoned(self) -> None:
        """Cancel the request when the subscriber left before the end (one-shot or cancel_on_disconnect),
        unless this process stopping ended the stream (the client was told to resume elsewhere)."""
        if not (self.is_complete or self.is_released):
            # If Redis is gone too, the request ends on its own limits.
            with contextlib.suppress(redis.RedisError):
                lifecycle.cancel(self.r, self.request, self.settings.stream_ttl_s)


def event_payload(event: StreamEvent) -> dict[str, Any]:
    """What a client sees of an event: everything but the wire version and the type."""
    if isinstance(event, TokenEvent) and event.logprobs is None:  # the hot path: skip pydantic's serializer
        return {"index": event.index, "text": event.text}
    return event.model_dump(mode="json", exclude={"v", "type", "token_ids"}, exclude_none=True)


def sse_message(kind: str, payload: Any) -> str:
    """One SSE message for a relay message; token, done and error events carry their index as id."""
    if kind == "event":
        return sse.frame(json.dumps(event_payload(payload)), event=payload.type, id=payload.index)
    if kind == "heartbeat":
        return sse.KEEP_ALIVE
    return sse.frame(json.dumps(payload), event=kind)


def ws_message(kind: str, payload: Any) -> str | None:
    """One WebSocket message for a relay message (heartbeats are WebSocket pings instead)."""
    if kind == "event":
        return json.dumps({"event": payload.type, **event_payload(payload)})
    if kind in ("heartbeat", "tick"):
        return None
    return json.dumps({"event": kind, **payload})


def sse_response(relay: Relay, cancel_on_disconnect: bool) -> Response:
    """Stream a relay as SSE; a client that leaves early cancels the request when asked to."""

    def body() -> Iterator[str]:
        try:
            yield sse.opening("stream open")
            for kind, payload in relay.messages():
                if kind != "tick":  # a dead SSE peer shows on the next write (heartbeats)
                    yield sse_message(kind, payload)
        except StreamGone as gone:
            yield sse_message("error", gone.payload())
        finally:
            if cancel_on_disconnect:
                relay.cancel_if_abandoned()

    return sse.event_stream(body(), {"X-Request-Id": relay.request.request_id})


def gone_message(request: GenerationRequest, settings: Settings) -> str:
    """Why a followed request's record vanished: it expired, or Redis lost it (a restart without its data)."""
    rid = request.request_id
    if time.time() - request.created_at >= settings.stream_ttl_s:
        return f"request {rid} has expired (requests are kept {settings.stream_ttl_s} s)"
    return (
        f"the record of request {rid} was lost before it ended (Redis restarted without its data); "
        "submit it again"
    )
