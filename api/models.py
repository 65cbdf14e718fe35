"""Model management: list, load, unload, follow the loads, search the Hub; and /status, the summary.

A load or unload is a Celery remote-control command to chosen workers; the workers report
progress and state to Redis, and everything here reads it from there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from api import context, model_catalog
from api.errors import ApiError
from api.hub_search import search_models
from api.relay import SSE_HEADERS
from api.schemas import LoadModelBody, UnloadModelBody
from api.submit import parse_body
from shared import bus, keys

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
def list_models() -> Response:
    """Known models in OpenAI's list shape, each with its state (loading, ready, failed, unloaded),
    load progress, the workers serving it and its queue depth."""
    data = [
        {"id": name, "object": "model", "owned_by": "torchweave", **info}
        for name, info in model_catalog.summaries(context.redis_client()).items()
    ]
    return jsonify({"object": "list", "data": data})


@bp.post("/v1/models/load")
def load() -> tuple[Response, int]:
    """Make `workers` workers load a model (202); follow it on GET /v1/models or /v1/models/events."""
    body = parse_body(LoadModelBody)
    name = model_catalog.checked_name(body.model)
    chosen = model_catalog.start_load(name, body.workers)
    return jsonify({"model": name, "state": "loading", "workers": [w.worker_id for w in chosen]}), 202


@bp.post("/v1/models/unload")
def unload() -> tuple[Response, int]:
    """Make every worker serving a model unload it (202); its queued requests fail if none is left."""
    body = parse_body(UnloadModelBody)
    serving = model_catalog.start_unload(body.model)
    return jsonify(
        {"model": body.model, "state": "unloading", "workers": [w.worker_id for w in serving]}
    ), 202


@bp.get("/v1/models/events")
def events() -> Response:
    """SSE: the current state of every model on every worker, then each change as it happens.

    Each event's id is its Redis stream id; reconnect with Last-Event-ID to miss nothing.
    """
    r = context.redis_client()
    heartbeat_s = context.settings().sse_heartbeat_s
    after = request.headers.get("Last-Event-ID") or request.args.get("from")
    if after is None:
        newest: Any = r.xrevrange(keys.MODEL_EVENTS, count=1)
        after = newest[0][0] if newest else "0-0"
        snapshot = [s for states in bus.model_states(r).values() for s in states]
    else:
        snapshot = []

    def body() -> Iterator[str]:
        cursor = after
        yield "retry: 1000\n: model events\n\n"
        for state in snapshot:
            yield f"event: model\ndata: {state.model_dump_json(exclude={'v'})}\n\n"
        last_sent = time.monotonic()
        while True:
            for entry_id, state in bus.read_model_events(r, cursor, block_ms=2000):
                cursor = entry_id
                yield f"id: {entry_id}\nevent: model\ndata: {state.model_dump_json(exclude={'v'})}\n\n"
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat_s:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()

    return Response(stream_with_context(body()), mimetype="text/event-stream", headers=SSE_HEADERS)


@bp.get("/v1/models/search")
def search() -> Response:
    """Hub search (`q`, `limit` 1 to 100): id, downloads, likes, parameters, size, pipeline tag.
    503 when the Hub cannot be reached."""
    query = request.args.get("q", "").strip()
    if not query or len(query) > 200:
        raise ApiError(400, "q: give a search text of 1 to 200 characters", param="q", code="invalid_query")
    try:
        limit = int(request.args.get("limit", "10"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ApiError(400, "limit: an integer from 1 to 100", param="limit", code="invalid_limit")
    return jsonify({"query": query, "models": search_models(query, limit)})


@bp.get("/status")
def status() -> Response:
    """The whole system in one look: workers by state, models by state, queue depth per model."""
    r = context.redis_client()
    workers = bus.list_workers(r)
    models = model_catalog.summaries(r)
    return jsonify(
        {
            "workers": {
                "total": len(workers),
                "ready": sum(w.state == "ready" for w in workers),
                "loading": sum(w.state == "loading" for w in workers),
                "idle": sum(w.state == "idle" for w in workers),
                "slots_used": sum(w.slots_used for w in workers),
                "slots_free": sum(w.slots_free for w in workers),
                "tokens_per_s": round(sum(w.tokens_per_s for w in workers), 2),
            },
            "models": {
                name: {k: info[k] for k in ("state", "workers", "progress", "queued", "reason")}
                for name, info in models.items()
            },
            "queue_depth": {name: info["queued"] for name, info in models.items()},
        }
    )
