"""The cluster at a glance: every live worker, and the summary of workers, models and queues."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import context
from api.auth.guard import admin_only
from api.models import catalog
from api.route_docs import documented
from shared import fleet, redis_memory

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
    """The whole system in one look: workers by state, models by state, queue depth per model, where
    Flower is (FLOWER_URL, else FLOWER_PORT on the host the caller reached), and Redis's memory (used, peak,
    maxmemory, eviction policy, with a warning unless it is noeviction) and number of keys."""
    r = context.redis_client()
    s = context.settings()
    workers = fleet.list_workers(r)
    models = catalog.summaries(r, workers)
    memory = redis_memory.memory(r)
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
            "ttft_ms": {
                name: ttft_percentiles(ttfts) for name, ttfts in fleet.recent_ttfts(r, list(models)).items()
            },
            "flower": {"url": s.flower_url or None, "port": s.flower_port},
            "redis": {**memory, "warning": redis_memory.eviction_warning(memory["policy"])},
        }
    )


def ttft_percentiles(ttfts: list[float]) -> dict[str, float | int | None]:
    """p50 and p99 of recent times to first token, in milliseconds (None with no sample)."""
    if not ttfts:
        return {"p50": None, "p99": None, "samples": 0}
    ranked = sorted(ttfts)

    def at(q: float) -> float:
        return round(1000 * ranked[min(len(ranked) - 1, int(q * len(ranked)))], 1)

    return {"p50": at(0.5), "p99": at(0.99), "samples": len(ranked)}
