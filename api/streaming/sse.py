"""The one SSE framer: every event stream of the API (token streams, model events, OpenAI chunks)
frames its messages here."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context

# Proxies must neither cache nor buffer an event stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEP_ALIVE = ": keep-alive\n\n"


def frame(data: str, event: str | None = None, id: str | int | None = None) -> str:
    """One SSE message: optional `id:` and `event:` lines, then `data:` (one line of JSON)."""
    head = ""
    if id is not None:
        head += f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n"


def comment(text: str) -> str:
    """An SSE comment line: clients ignore it, proxies see traffic."""
    return f": {text}\n\n"


def opening(text: str) -> str:
    """The first bytes of a stream: they flush the headers, and ask EventSource clients to reconnect
    after 1 s if the connection drops (an API restart); they resume with Last-Event-ID."""
    return f"retry: 1000\n: {text}\n\n"


def event_stream(body: Iterator[str], headers: dict[str, str] | None = None) -> Response:
    """A streaming text/event-stream response of already framed messages."""
    return Response(
        stream_with_context(body), mimetype="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )
