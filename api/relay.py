"""Follow a request's event stream in Redis and format its events for SSE and WebSocket clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from shared import bus, keys
from shared.messages import StreamEvent

BLOCK_MS = 1000  # how long one blocking read waits; also how often we check the request still exists


class StreamGone(Exception):
    """The request's record expired (or was deleted) while it was being followed."""


def follow(
    r: redis.Redis, request_id: str, after_index: int = -1, heartbeat_s: float = 15.0
) -> Iterator[StreamEvent | None]:
    """Yield events after `after_index` as they arrive, until the done or error event.

    Yields None after heartbeat_s without an event, so the caller can keep the connection alive.
    """
    last = after_index
    idle_since = time.monotonic()
    while True:
        events = bus.read_events(r, request_id, last, block_ms=BLOCK_MS)
        if not events:
            if not r.exists(keys.request_key(request_id)):
                raise StreamGone(request_id)
            if time.monotonic() - idle_since >= heartbeat_s:
                idle_since = time.monotonic()
                yield None
            continue
        idle_since = time.monotonic()
        for event in events:
            yield event
            last = event.index
            if event.type != "token":
                return


def event_payload(event: StreamEvent) -> dict[str, Any]:
    """What a client sees of an event: everything but the wire version and the type."""
    return event.model_dump(mode="json", exclude={"v", "type"})


def sse(event: StreamEvent) -> str:
    return f"id: {event.index}\nevent: {event.type}\ndata: {json.dumps(event_payload(event))}\n\n"


def sse_comment(text: str) -> str:
    return f": {text}\n\n"


def sse_named(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def ws_message(event: StreamEvent) -> str:
    return json.dumps({"event": event.type, **event_payload(event)})
