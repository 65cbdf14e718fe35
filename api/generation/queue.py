"""Where a queued request stands: its position among its model's waiting requests and a wait estimate."""

from __future__ import annotations

from typing import Any

import redis

from shared import bus, fleet
from shared.messages import GenerationRequest
from shared.settings import Settings


def queue_info(r: redis.Redis, request: GenerationRequest, settings: Settings) -> dict[str, Any] | None:
    """Position and estimated wait of a request that waits for a worker; None once it left the queue."""
    position = bus.queue_position(r, request, settings.stream_ttl_s)
    if position is None:
        return None
    workers = [w for w in fleet.list_workers(r) if w.model == request.model]
    slots = sum(w.max_batch for w in workers)
    means = [w.mean_request_s for w in workers if w.mean_request_s is not None]
    estimate = None
    if slots and means:
        # Each wave of `slots` requests ahead takes about one mean request time.
        estimate = round((position // slots + 1) * (sum(means) / len(means)), 3)
    info: dict[str, Any] = {"position": position, "estimated_wait_s": estimate, "workers": len(workers)}
    if not any(w.state == "ready" for w in workers):
        loading = any(w.state == "loading" for w in workers)
        info["waiting_for_worker"] = True
        info["reason"] = (
            f"waiting for a worker to finish loading model {request.model!r}"
            if loading
            else f"no live worker serves model {request.model!r}"
        )
    return info
