"""The reaper: any live worker requeues the requests whose worker stopped renewing its leases.

A requeued request's task goes back on its model's queue; the worker that takes it resumes
the stream where it stopped. Celery's visibility timeout alone would not do: it is an hour
by default, and when shorter it redelivers long generations while they still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from shared import admission, bus, keys, lifecycle, logs, metrics, timeline
from shared.messages import FinishReason, GenerationRequest
from shared.settings import Settings

log = logging.getLogger(__name__)


def reap(r: redis.Redis, settings: Settings, enqueue: Callable[[GenerationRequest], None]) -> list[str]:
    """Requeue (or fail, past MAX_ATTEMPTS) every request whose lease has run out, and send again the
    task of every request queued past REDISPATCH_AFTER; returns their ids."""
    handled = []
    for rid in lifecycle.expired_leases(r):
        stored = bus.load_request(r, rid)
        if stored is None:  # expired meanwhile: nothing left to continue
            pipe = r.pipeline()
            lifecycle.release(pipe, rid)
            pipe.execute()
            continue
        result = lifecycle.requeue(
            r, stored.request, holder=None, max_attempts=settings.max_attempts, ttl_s=settings.stream_ttl_s
        )
        if result == "skipped":
            continue
        lost = stored.state.worker_id
        # Recorded before the task goes out: the worker that takes it records "claimed" after this.
        timeline.record(r, rid, result, settings.stream_ttl_s, reason="its worker stopped", worker=lost)
        if result == "requeued":
            enqueue(stored.request)
            metrics.count_requeue(r, stored.request.model, lost or "", "worker_lost")
        else:
            metrics.count_ended_unrun(r, stored.request.model, lost or "", FinishReason.ERROR.value)
        log.warning("request %s lost its worker: %s", rid, result, extra=logs.about(rid))
        handled.append(rid)
    for rid in admission.stale_dispatches(r, settings.redispatch_after_s):
        stored = bus.load_request(r, rid)
        if stored is None:
            r.zrem(keys.DISPATCH, rid)
        elif admission.redispatch(r, rid, settings.redispatch_after_s):
            log.warning(
                "request %s still queued after %.0f s: its task is sent again",
                rid,
                settings.redispatch_after_s,
                extra=logs.about(rid),
            )
            enqueue(stored.request)
            metrics.count_requeue(r, stored.request.model, "", "redispatched")
            handled.append(rid)
    return handled
