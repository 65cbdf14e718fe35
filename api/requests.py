"""Generation requests: submit, status, one-shot streaming and the no-batching baseline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from api import context
from api.errors import ApiError
from api.relay import StreamGone, follow, sse, sse_comment, sse_named
from api.submit import parse_submit_body, submit
from shared import bus, keys
from shared.messages import GenerationRequest, RequestState, TokenEvent

bp = Blueprint("requests", __name__, url_prefix="/v1")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
NOBATCH_TIMEOUT_S = 600


def _base_url(ws: bool = False) -> str:
    base = context.settings().public_url or request.host_url.rstrip("/")
    if ws:
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base


@bp.post("/requests")
def create_request() -> tuple[Response, int]:
    """Accept a prompt; 202 with the id and where to follow its tokens."""
    gen = submit(parse_submit_body())
    rid = gen.request_id
    body = {
        "id": rid,
        "model": gen.model,
        "status": "queued",
        "stream_url": f"{_base_url()}/v1/requests/{rid}/stream",
        "websocket_url": f"{_base_url(ws=True)}/v1/requests/{rid}/ws",
    }
    return jsonify(body), 202


def load_or_404(request_id: str) -> tuple[GenerationRequest, RequestState]:
    found = bus.load_request(context.redis_client(), request_id)
    if found is None:
        raise ApiError(404, f"request {request_id} is unknown or has expired", param="id", code="not_found")
    return found


def _ago(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


@bp.get("/requests/<request_id>")
def get_request(request_id: str) -> Response:
    """Status, text so far, finish reason, usage and timings of one request."""
    gen, state = load_or_404(request_id)
    events = bus.read_events(context.redis_client(), request_id, count=None)
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    body: dict[str, Any] = {
        "id": request_id,
        "model": gen.model,
        "status": state.status.value,
        "text": text,
        "finish_reason": state.finish_reason,
        "usage": state.usage.model_dump() if state.usage else None,
        "error": state.error,
        "worker_id": state.worker_id,
        "created_at": gen.created_at,
        "largest_batch": state.largest_batch,
        "timings": {
            "queued_s": _ago(gen.created_at, state.started_at),
            "ttft_s": _ago(gen.created_at, state.first_token_at),
            "total_s": _ago(gen.created_at, state.finished_at),
        },
    }
    return jsonify(body)


@bp.post("/generate")
def generate() -> Response:
    """One-shot SSE: `ttft` (seconds to the first token), then `token` events, then `done`."""
    gen = submit(parse_submit_body())
    r, heartbeat_s = context.redis_client(), context.settings().sse_heartbeat_s

    def events() -> Iterator[str]:
        sent_ttft = False
        try:
            for event in follow(r, gen.request_id, heartbeat_s=heartbeat_s):
                if event is None:
                    yield sse_comment("keep-alive")
                    continue
                if not sent_ttft:
                    sent_ttft = True
                    yield sse_named("ttft", round(time.time() - gen.created_at, 6))
                yield sse(event)
        except StreamGone:
            yield sse_named("error", {"message": "the request expired"})

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, "X-Request-Id": gen.request_id},
    )


@bp.post("/generate_nobatch")
def generate_nobatch() -> Response:
    """Generate one request alone (no batching) and return its whole text as JSON."""
    gen = submit(parse_submit_body(), task_name=keys.GENERATE_NOBATCH_TASK)
    deadline = time.monotonic() + NOBATCH_TIMEOUT_S
    text = []
    for event in follow(context.redis_client(), gen.request_id, heartbeat_s=5.0):
        if event is None:
            if time.monotonic() > deadline:
                raise ApiError(504, f"request {gen.request_id} did not finish in {NOBATCH_TIMEOUT_S}s")
            continue
        if event.type == "token":
            text.append(event.text)
        elif event.type == "error":
            raise ApiError(500, f"generation failed: {event.message}", code="generation_failed")
        else:
            return jsonify(
                {
                    "id": gen.request_id,
                    "text": "".join(text),
                    "finish_reason": event.finish_reason,
                    "usage": event.usage.model_dump(),
                }
            )
    raise ApiError(500, "the stream ended without a done event")
