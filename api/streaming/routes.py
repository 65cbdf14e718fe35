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
from api.auth.guard import access_check
from api.auth.principal import current
from api.errors import ApiError
from api.generation.lookup import load_or_404
from api.route_docs import QueryParam, documented
from api.streaming.relay import Relay, StreamGone, sse_response, ws_message
from api.streaming.websocket import HelloError, guard_inbox, read_hello
from shared import bus
from shared.messages import GenerationRequest

SERVICE_RESTART = 1012  # the WebSocket close code for "the server is restarting: reconnect"
bp = Blueprint("streaming", __name__, url_prefix="/v1")
sock = Sock()
FROM = QueryParam(
    "from", {"type": "integer", "minimum": -1}, description="the last index seen: resume after it"
)


def parse_index(raw: str | None, name: str, gen: GenerationRequest) -> int:
    """The last index a client saw (-1: none); 400 unless an integer from -1 to the stream's last
    possible index (one event per new token at most, then the end)."""
    if raw is None or raw == "":
        return -1
    if not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise ApiError(400, f"{name} must be an integer event index", param=name, code="invalid_index")
    value = int(raw)
    last = gen.params.max_new_tokens
    if not -1 <= value <= last:
        raise ApiError(
            400,
            f"{name} must be from -1 to {last}: this stream has no event past index {last}",
            param=name,
            code="invalid_index",
        )
    return value


@bp.get("/requests/<request_id>/stream")
@documented(stream=True, description="token events, then done (or error)", errors=(400, 404), query=(FROM,))
def stream(request_id: str) -> Response:
    """SSE: `token` events `{index, text}`, then `done` `{finish_reason, usage}` (or `error`).

    Resumes after `Last-Event-ID` (or `?from=N`): no gap, no repeat.
    """
    gen = load_or_404(request_id).request
    after = parse_index(request.headers.get("Last-Event-ID") or request.args.get("from"), "from", gen)
    relay = Relay(
        context.redis_client(), context.fanout(), gen, context.settings(), after_index=after,
        is_allowed=access_check(),
    )  # fmt: skip
    return sse_response(relay, cancel_on_disconnect=gen.cancel_on_disconnect)


@sock.route("/requests/<request_id>/ws", bp=bp)
@documented(websocket=True, query=(FROM,))
def websocket(ws: Any, request_id: str) -> None:
    """WebSocket: the same events as SSE, each a JSON message with an `event` field.

    The handshake has happened by the time we run, so problems are an `error` message
    and a close with code 1008 (or 1009 for a message over the size limit) rather than an
    HTTP status. The client may send one message, `{"from": N}`, and nothing after it.
    """
    inbox = guard_inbox(ws)
    stored = bus.load_request(context.redis_client(), request_id)
    if stored is None or not current().may_see(stored.request):
        _refuse(ws, f"request {request_id} is unknown or has expired", "not found")
        return
    gen = stored.request
    try:
        after = parse_index(request.args.get("from"), "from", gen)
        if "from" not in request.args:
            hello = read_hello(ws)
            if hello is not None:
                after = parse_index(hello, "from", gen)
    except (ApiError, HelloError) as exc:
        _refuse(ws, f"bad resume point: {exc}", "bad request")
        return
    relay = Relay(
        context.redis_client(), context.fanout(), gen, context.settings(), after_index=after,
        is_allowed=access_check(),
    )  # fmt: skip
    try:
        for kind, payload in relay.messages():
            if not ws.connected:
                break  # the peer left: seen on an idle tick, not only on the next write
            if inbox.overflowed:
                _refuse(ws, 'this socket takes one message, {"from": N}, and nothing after it', "policy")
                break
            message = ws_message(kind, payload)
            if message is not None:
                ws.send(message)
    except StreamGone as gone:
        if gone.code == "key_revoked":
            _refuse(ws, gone.message, "key revoked", gone.code)  # 1008: not to be retried with it
            return
        ws.send(json.dumps({"event": "error", **gone.payload()}))
    except simple_websocket.ConnectionClosed:
        pass
    finally:
        if gen.cancel_on_disconnect:
            relay.cancel_if_abandoned()
    ws.close(reason=SERVICE_RESTART if relay.is_released else None)


def _refuse(ws: Any, message: str, reason: str, code: str | None = None) -> None:
    """Tell the client why in an error message, then close with 1008 (policy violation)."""
    try:
        ws.send(json.dumps({"event": "error", "message": message, **({"code": code} if code else {})}))
        ws.close(reason=1008, message=reason)
    except simple_websocket.ConnectionClosed:
        pass
