"""Model management: list, load, unload, follow the loads, search the Hub, and one model's facts.

A load or unload is a Celery remote-control command to chosen workers; the workers report
progress and state to Redis, and everything here reads it from there.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth.guard import admin_only
from api.auth.principal import current
from api.bodies import parse_body
from api.errors import ApiError
from api.models import catalog
from api.models.hub_search import search_models
from api.models.schemas import LoadModelBody, UnloadModelBody
from api.route_docs import QueryParam, documented
from api.streaming import sse
from api.streaming.stopping import RECONNECT, is_stopping, reconnect_message
from shared import fleet, keys

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
@documented()
def list_models() -> Response:
    """The models a request can name now (ready, or loading) in OpenAI's list shape under `data`, each
    with its state, load progress, the live workers serving it and its queue depth; the models that
    failed to load or were unloaded are listed apart, under `history`, with the reason a load failed."""
    models = [
        {"id": name, "object": "model", "owned_by": "torchweave", **info}
        for name, info in catalog.summaries(context.redis_client()).items()
    ]
    return jsonify(
        {
            "object": "list",
            "data": [m for m in models if m["state"] in catalog.CALLABLE],
            "history": [m for m in models if m["state"] not in catalog.CALLABLE],
        }
    )


@bp.post("/v1/models/load")
@admin_only
@documented(body=LoadModelBody, success=202, description="loading: follow /v1/models/events", errors=(409,))
def load() -> tuple[Response, int]:
    """Make `workers` workers load a model (Hub id or a path under MODEL_DIR); 202."""
    body = parse_body(LoadModelBody)
    name = catalog.checked_name(body.model)
    chosen = catalog.start_load(name, body.workers)
    return jsonify({"model": name, "state": "loading", "workers": [w.worker_id for w in chosen]}), 202


@bp.post("/v1/models/unload")
@admin_only
@documented(body=UnloadModelBody, success=202, description="unloading", errors=(404,))
def unload() -> tuple[Response, int]:
    """Make every worker serving a model unload it (202); its queued requests fail if none is left."""
    body = parse_body(UnloadModelBody)
    serving = catalog.start_unload(body.model)
    return jsonify(
        {"model": body.model, "state": "unloading", "workers": [w.worker_id for w in serving]}
    ), 202


STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


def check_stream_id(raw: str) -> None:
    """400 unless `raw` is a Redis stream id (`<ms>-<seq>`, each part below 2**64)."""
    match = STREAM_ID.match(raw)
    if match is None or any(int(part) >= 2**64 for part in match.groups()):
        raise ApiError(
            400, "Last-Event-ID (or from) must be an event id of this stream, like 1700000000000-0",
            param="from", code="invalid_event_id",
        )  # fmt: skip


@bp.get("/v1/models/events")
@admin_only
@documented(
    stream=True, description="`model` events", errors=(400,), query=(QueryParam("from", {"type": "string"}),)
)
def events() -> Response:
    """SSE: what each live worker does with each model now (oldest first), then each change as it happens.

    Each event's id is its Redis stream id; reconnect with Last-Event-ID to miss nothing, or ask
    `from=0-0` for the history: every change still kept (the newest 1000 or so), in order.
    """
    r = context.redis_client()
    heartbeat_s = context.settings().sse_heartbeat_s
    after = request.headers.get("Last-Event-ID") or request.args.get("from")
    snapshot = []
    if after is not None:
        check_stream_id(after)
    else:
        newest: Any = r.xrevrange(keys.MODEL_EVENTS, count=1)
        after = newest[0][0] if newest else "0-0"
        snapshot = catalog.live_states(r)

    def body() -> Iterator[str]:
        cursor = after
        yield sse.opening("model events")
        for state in snapshot:
            yield sse.frame(state.model_dump_json(exclude={"v"}), event="model")
        last_sent = time.monotonic()
        while not is_stopping():
            for entry_id, state in fleet.read_model_events(r, cursor, block_ms=2000):
                cursor = entry_id
                yield sse.frame(state.model_dump_json(exclude={"v"}), event="model", id=entry_id)
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat_s:
                yield sse.KEEP_ALIVE
                last_sent = time.monotonic()
        yield sse.frame(json.dumps(reconnect_message()), event=RECONNECT)

    return sse.event_stream(body())


SEARCH_QUERY = (
    QueryParam("q", {"type": "string", "minLength": 1, "maxLength": 200}, required=True),
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
)


@bp.get("/v1/models/search")
@documented(description="matching models", errors=(400, 503), query=SEARCH_QUERY)
def search() -> Response:
    """Hub search (`q`, `limit` 1 to 100): id, downloads, likes, parameters, size, pipeline tag.

    503 when the Hub cannot be reached.
    """
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


@bp.get("/model")
@documented(errors=(404, 503), query=(QueryParam("model", {"type": "string"}),))
def model() -> Response:
    """One model's facts (vocab, EOS, device, batch size, context) and, for admins, its workers.

    404 for a model no worker serves; 503 while no worker serves the default model.
    """
    default = context.settings().model
    name = request.args.get("model") or default
    workers = [w for w in fleet.list_workers(context.redis_client()) if w.model == name]
    if not workers and name != default:
        raise ApiError(404, f"no live worker serves model {name!r}", param="model", code="model_not_found")
    if not workers:
        raise ApiError(503, f"no live worker serves model {name!r}", param="model", code="no_worker")
    w = workers[0]
    return jsonify(
        {
            "model": name,
            "vocab_size": w.vocab_size,
            "eos_token_id": w.eos_token_id,
            "device": w.device,
            "dtype": w.dtype,
            "max_batch_size": w.max_batch,
            "max_model_len": w.max_model_len,
            **({"workers": [x.model_dump(exclude={"v"}) for x in workers]} if current().is_admin else {}),
        }
    )
