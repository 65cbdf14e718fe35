"""Subscribe to a request's tokens: SSE at /stream, WebSocket at /ws. Both replay from the start."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, stream_with_context
from flask_sock import Sock

from api import context
from api.relay import StreamGone, follow, sse, sse_comment, sse_named, ws_message
from api.requests import SSE_HEADERS, load_or_404
from shared import bus

bp = Blueprint("streams", __name__, url_prefix="/v1")
sock = Sock()


@bp.get("/requests/<request_id>/stream")
def stream(request_id: str) -> Response:
    """SSE: `token` events `{index, text}`, then `done` `{finish_reason, usage}` (or `error`)."""
    load_or_404(request_id)
    r, heartbeat_s = context.redis_client(), context.settings().sse_heartbeat_s

    def events() -> Iterator[str]:
        try:
            for event in follow(r, request_id, heartbeat_s=heartbeat_s):
                yield sse_comment("keep-alive") if event is None else sse(event)
        except StreamGone:
            yield sse_named("error", {"message": f"request {request_id} expired"})

    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=SSE_HEADERS)


@sock.route("/requests/<request_id>/ws", bp=bp)
def websocket(ws: Any, request_id: str) -> None:
    """WebSocket: the same events as SSE, each a JSON message with an `event` field.

    The handshake has happened by the time we run, so an unknown id is an error message
    and a close with code 1008 rather than an HTTP 404.
    """
    r, heartbeat_s = context.redis_client(), context.settings().sse_heartbeat_s
    if bus.load_request(r, request_id) is None:
        ws.send(json.dumps({"event": "error", "message": f"request {request_id} is unknown or has expired"}))
        ws.close(reason=1008, message="not found")
        return
    try:
        for event in follow(r, request_id, heartbeat_s=heartbeat_s):
            if event is not None:
                ws.send(ws_message(event))
    except StreamGone:
        ws.send(json.dumps({"event": "error", "message": f"request {request_id} expired"}))
    ws.close()
