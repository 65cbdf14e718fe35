"""Health: is Redis answering and is a worker alive?"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from api import context
from api.route_docs import documented
from shared import fleet

bp = Blueprint("health", __name__)


@bp.get("/health")
@documented(description="ok", extra={503: "what is missing"})
def health() -> tuple[Response, int]:
    """200 `{"status": "ok"}` while Redis answers and a worker is alive; 503 saying which is missing."""
    try:
        context.redis_client().ping()
        workers = fleet.list_workers(context.redis_client())
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "reason": f"redis unreachable: {exc}"}), 503
    if not workers:
        return jsonify({"status": "unavailable", "reason": "no live worker"}), 503
    return jsonify({"status": "ok", "workers": len(workers)}), 200
