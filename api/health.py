"""Liveness and model facts, from Redis and the workers' heartbeats."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify, request

from api import context
from api.errors import ApiError
from shared import bus

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    """200 `{"status": "ok"}` while Redis answers and a worker is alive; 503 saying which is missing."""
    try:
        context.redis_client().ping()
        workers = bus.list_workers(context.redis_client())
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "reason": f"redis unreachable: {exc}"}), 503
    if not workers:
        return jsonify({"status": "unavailable", "reason": "no live worker"}), 503
    return jsonify({"status": "ok", "workers": len(workers)}), 200


@bp.get("/v1/workers")
def workers() -> Response:
    """Every live worker: id, host, pid, model, device, slots used and free, and its step record."""
    return jsonify(
        {"workers": [w.model_dump(exclude={"v"}) for w in bus.list_workers(context.redis_client())]}
    )


@bp.get("/model")
def model() -> Response:
    """The served model's facts (vocab, EOS, device, batch size) and the workers that serve it."""
    name = request.args.get("model") or context.settings().model
    workers = [w for w in bus.list_workers(context.redis_client()) if w.model == name]
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
            "workers": [x.model_dump() for x in workers],
        }
    )
