"""Generation requests: submit, status, cancel, one-shot streaming and the no-batching baseline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth.guard import access_check, admin_only
from api.bodies import parse_body
from api.errors import ApiError
from api.generation.lookup import load_or_404
from api.generation.queue import queue_info
from api.generation.schemas import SubmitBody
from api.generation.submit import submit
from api.route_docs import documented
from api.streaming.relay import Relay, follow, sse_response
from shared import bus, keys, lifecycle, timeline
from shared.messages import RequestStatus, TokenEvent

bp = Blueprint("generation", __name__, url_prefix="/v1")
NOBATCH_TIMEOUT_S = 600


def _base_url(ws: bool = False) -> str:
    base = context.settings().public_url or request.host_url.rstrip("/")
    if ws:
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base


@bp.post("/requests")
@documented(body=SubmitBody, success=202, description="accepted: its id and stream URLs", errors=(404, 429))
def create_request() -> tuple[Response, int]:
    """Accept a prompt; 202 with the id and where to follow its tokens."""
    gen = submit(parse_body(SubmitBody))
    rid = gen.request_id
    body = {
        "id": rid,
        "model": gen.model,
        "status": "queued",
        "stream_url": f"{_base_url()}/v1/requests/{rid}/stream",
        "websocket_url": f"{_base_url(ws=True)}/v1/requests/{rid}/ws",
    }
    return jsonify(body), 202


def _ago(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


@bp.get("/requests/<request_id>")
@documented(errors=(404,))
def get_request(request_id: str) -> Response:
    """Status, text so far, finish reason, usage and timings of one request."""
    stored = load_or_404(request_id)
    gen, state = stored.request, stored.state
    events = bus.read_events(context.redis_client(), request_id, count=None)
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    is_queued = state.status == RequestStatus.QUEUED
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
        "queue": queue_info(context.redis_client(), gen, context.settings()) if is_queued else None,
        "timings": {
            "queued_s": _ago(gen.created_at, state.started_at),
            "ttft_s": _ago(gen.created_at, state.first_token_at),
            "total_s": _ago(gen.created_at, state.finished_at),
        },
    }
    return jsonify(body)


@bp.get("/requests/<request_id>/timeline")
@documented(errors=(404,))
def get_timeline(request_id: str) -> Response:
    """What happened to a request and when: submitted, each queue position while waiting, claimed and
    admitted (worker, step), first token, tokens over time ([index, time, tokens]), hand-offs, the end."""
    stored = load_or_404(request_id)
    r = context.redis_client()
    tokens = [
        [e.index, e.at, len(e.token_ids)]
        for e in bus.read_events(r, request_id, count=None)
        if isinstance(e, TokenEvent) and e.at is not None
    ]
    return jsonify(
        {
            "id": request_id,
            "model": stored.request.model,
            "status": stored.state.status.value,
            "created_at": stored.request.created_at,
            "steps": timeline.read(r, request_id),
            "tokens": tokens,
        }
    )


@bp.delete("/requests/<request_id>")
@documented(description="cancelled while queued", errors=(404, 409), extra={202: "cancelling"})
def cancel_request(request_id: str) -> tuple[Response, int]:
    """Cancel from any API process: 200 if it was still queued, 202 while its worker stops it (one step)."""
    gen = load_or_404(request_id).request
    had = lifecycle.cancel(context.redis_client(), gen, context.settings().stream_ttl_s)
    if had == "queued":
        return jsonify({"id": request_id, "status": "cancelled"}), 200
    if had == "running":
        return jsonify({"id": request_id, "status": "cancelling"}), 202
    if had == "missing":
        load_or_404(request_id)  # expired between the two reads: the same 404
    raise ApiError(409, f"request {request_id} has already ended ({had})", param="id", code="already_ended")


@bp.post("/generate")
@documented(body=SubmitBody, stream=True, description="SSE: ttft, token events, done", errors=(404, 429))
def generate() -> Response:
    """One-shot SSE: `ttft` (seconds to the first token), then `token` events, then `done`.

    A client that disconnects before the end cancels the request.
    """
    gen = submit(parse_body(SubmitBody))
    relay = TtftRelay(
        context.redis_client(), context.fanout(), gen, context.settings(), is_allowed=access_check()
    )
    return sse_response(relay, cancel_on_disconnect=True)


class TtftRelay(Relay):
    """A relay that announces the time to the first event before it."""

    def messages(self) -> Iterator[tuple[str, Any]]:
        sent_ttft = False
        for kind, payload in super().messages():
            if kind == "event" and not sent_ttft:
                sent_ttft = True
                yield "ttft", round(time.time() - self.request.created_at, 6)
            yield kind, payload


NOT_IN_NOBATCH = {"frequency_penalty", "presence_penalty", "logit_bias", "prompt_logprobs", "json_schema"}


@bp.post("/generate_nobatch")
@admin_only
@documented(body=SubmitBody, description="the whole text", errors=(404, 429, 504))
def generate_nobatch() -> Response:
    """Generate one request alone (no batching) and return its whole text as JSON.

    Off unless ENABLE_NOBATCH=1: it holds the worker's model for the whole generation, so every
    batched request on that worker stalls meanwhile. For benchmarks, not for serving.
    """
    if not context.settings().enable_nobatch:
        raise ApiError(
            404,
            "the no-batching baseline is off on this server (ENABLE_NOBATCH=1 turns it on, for benchmarks)",
            code="disabled",
        )
    body = parse_body(SubmitBody)
    for name in sorted(body.model_fields_set & NOT_IN_NOBATCH):  # HF generate alone does not apply them
        raise ApiError(
            400, f"{name} is not supported by the no-batching baseline", param=name, code="not_supported"
        )
    gen = submit(body, task_name=keys.GENERATE_NOBATCH_TASK)
    deadline = time.monotonic() + NOBATCH_TIMEOUT_S
    text = []
    for event in follow(context.fanout(), gen.request_id):
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
