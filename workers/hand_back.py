"""Handing a running request back to its model's queue, for another worker to resume from its stream.

A worker does this when it drains (shutdown, model switch): the request leaves this engine, its record
goes back to `queued` under `lifecycle.requeue`'s rules, and its task goes back on the queue.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import redis

from shared import lifecycle, logs, metrics, timeline
from shared.messages import GenerationRequest
from shared.settings import Settings

log = logging.getLogger(__name__)


def hand_back(
    client: redis.Redis,
    request: GenerationRequest,
    settings: Settings,
    worker_id: str,
    enqueue: Callable[[GenerationRequest], None],
) -> str:
    """Requeue one request this worker held and put its task back; returns `lifecycle.requeue`'s result.
    The caller has already taken the request out of its engine."""
    result = lifecycle.requeue(
        client, request, holder=worker_id, max_attempts=settings.max_attempts, ttl_s=settings.stream_ttl_s
    )
    if result == "requeued":
        # The step before the task: the worker that takes it records "claimed" after this.
        with contextlib.suppress(redis.RedisError):
            timeline.record(client, request.request_id, "requeued", settings.stream_ttl_s,
                            reason="handed back", worker=worker_id)  # fmt: skip
        enqueue(request)
        with contextlib.suppress(redis.RedisError):
            metrics.count_requeue(client, request.model, worker_id, "handed_back")
    log.info("handed %s back to the queue (%s)", request.request_id, result,
             extra=logs.about(request.request_id))  # fmt: skip
    return result
