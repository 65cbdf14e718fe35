"""Health, the way Kubernetes probes expect it: live while this process answers, ready while Redis
answers and a worker serves the default model and can take work."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify

from api import context
from api.auth.guard import public
from api.route_docs import documented
from shared import fleet

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


def readiness() -> tuple[dict[str, object], int]:
    """(body, status): 200 when ready; 503 saying what is missing."""
    model = context.settings().model
    try:
        workers = fleet.list_workers(context.redis_client())
    except redis.RedisError as exc:
        log.warning("health: redis unreachable: %s", exc)  # the address stays in the log
        return {"status": "unavailable", "reason": "redis unreachable"}, 503
    if not workers:
        return {"status": "unavailable", "reason": "no live worker"}, 503
    # A worker with batch slots has an engine: it serves its model, even while it checks another to load.
    serving = [w for w in workers if w.model == model and w.max_batch > 0]
    if not serving:
        reason = f"no live worker serves the default model {model!r} (loading, unloaded, or switched)"
        return {"status": "unavailable", "reason": reason, "workers": len(workers)}, 503
    return {"status": "ok", "workers": len(workers), "serving": len(serving)}, 200


@bp.get("/health")
@public
@documented(description="ready", extra={503: "what is missing"})
def health() -> tuple[Response, int]:
    """200 `{"status": "ok"}` while Redis answers and a worker serves the default model; 503 saying
    which is missing. The same as /health/ready."""
    body, status = readiness()
    return jsonify(body), status


@bp.get("/health/ready")
@public
@documented(description="ready", extra={503: "what is missing"})
def ready() -> tuple[Response, int]:
    """Readiness probe: 200 while this API can serve requests (Redis, and a worker on the default model)."""
    body, status = readiness()
    return jsonify(body), status


@bp.get("/health/live")
@public
@documented(description="alive")
def live() -> Response:
    """Liveness probe: 200 while this process answers, whatever Redis and the workers do."""
    return jsonify({"status": "alive"})
