"""Subscribe to a request's events: SSE at /stream, WebSocket at /ws.

Both resume after the last index the client saw (`Last-Event-ID` or `?from=N` for SSE;
`?from=N` or a first message `{"from": N}` for WebSocket), replay what is stored, then
follow live. Any number of subscribers may follow one request, from any API process.
"""

from __future__ import annotations

import json
from typing import Any

import simple_websocket
from flask import Blueprint, Response, request
from flask_sock import Sock

from api import context
from api.errors import ApiError
from api.generation.lookup import load_or_404
from api.route_docs import QueryParam, documented
from api.streaming.relay import Relay, StreamGone, expired_message, sse_response, ws_message
from shared import bus

bp = Blueprint("streaming", __name__, url_prefix="/v1")
sock = Sock()
WS_HELLO_TIMEOUT_S = 0.3  # how long a WebSocket waits for an optional {"from": N} before streaming
FROM = QueryParam(
    "from", {"type": "integer", "minimum": -1}, description="the last index seen: resume after it"
)


def parse_index(raw: str | None, name: str) -> int:
    """The last index a client saw (-1: none); 400 if it is not an integer >= -1."""
    if raw is None or raw == "":
        return -1
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer event index", param=name) from None
    if value < -1:
        raise ApiError(400, f"{name} must be >= -1", param=name)
    return value


@bp.get("/requests/<request_id>/stream")
@documented(stream=True, description="token events, then done (or error)", errors=(400, 404), query=(FROM,))
def stream(request_id: str) -> Response:
    """SSE: `token` events `{index, text}`, then `done` `{finish_reason, usage}` (or `error`).

    Resumes after `Last-Event-ID` (or `?from=N`): no gap, no repeat.
    """
    after = parse_index(request.headers.get("Last-Event-ID") or request.args.get("from"), "from")
    gen = load_or_404(request_id).request
    relay = Relay(context.redis_client(), context.fanout(), gen, context.settings(), after_index=after)
    return sse_response(relay, cancel_on_disconnect=gen.cancel_on_disconnect)


@sock.route("/requests/<request_id>/ws", bp=bp)
@documented(websocket=True, query=(FROM,))
def websocket(ws: Any, request_id: str) -> None:
    """WebSocket: the same events as SSE, each a JSON message with an `event` field.

    The handshake has happened by the time we run, so problems are an `error` message
    and a close with code 1008 rather than an HTTP status.
    """
    r = context.redis_client()
    stored = bus.load_request(r, request_id)
    if stored is None:
        ws.send(json.dumps({"event": "error", "message": f"request {request_id} is unknown or has expired"}))
        ws.close(reason=1008, message="not found")
        return
    try:
        after = parse_index(request.args.get("from"), "from")
        if "from" not in request.args:
            hello = ws.receive(timeout=WS_HELLO_TIMEOUT_S)
            if hello:
                after = parse_index(str(json.loads(hello).get("from", -1)), "from")
    except (ApiError, ValueError, AttributeError) as exc:
        ws.send(json.dumps({"event": "error", "message": f"bad resume point: {exc}"}))
        ws.close(reason=1008, message="bad request")
        return
    relay = Relay(r, context.fanout(), stored.request, context.settings(), after_index=after)
    try:
        for kind, payload in relay.messages():
            message = ws_message(kind, payload)
            if message is not None:
                ws.send(message)
    except StreamGone:
        ws.send(json.dumps({"event": "error", **expired_message(request_id)}))
    except simple_websocket.ConnectionClosed:
        pass
    finally:
        if stored.request.cancel_on_disconnect:
            relay.cancel_if_abandoned()
    ws.close()
