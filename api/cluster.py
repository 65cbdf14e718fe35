"""The cluster at a glance: every live worker, and the summary of workers, models and queues."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import context
from api.auth.guard import admin_only
from api.models import catalog
from api.route_docs import documented
from shared import fleet

bp = Blueprint("cluster", __name__)


@bp.get("/v1/workers")
@admin_only
@documented(errors=(401, 403))
def workers() -> Response:
    """Every live worker: id, host, pid, Celery node, model, state, device, slots, tokens/s, step record."""
    return jsonify(
        {"workers": [w.model_dump(exclude={"v"}) for w in fleet.list_workers(context.redis_client())]}
    )


@bp.get("/status")
@admin_only
@documented(errors=(401, 403))
def status() -> Response:
    """The whole system in one look: workers by state, models by state, queue depth per model."""
    r = context.redis_client()
    workers = fleet.list_workers(r)
    models = catalog.summaries(r)
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
