"""Requests that wait for a model no worker serves or loads: with AUTOLOAD a worker is told to load it,
else they fail once they have waited UNSERVED_TIMEOUT for it, with an error event that says why.

Such a request can be accepted just as its model goes away: a POST /v1/requests a moment after an unload,
while the heartbeats still show the model served, arrives after the unload failed the queued ones, and no
worker would ever take it. Every live worker runs this with its heartbeat. The clock starts when one first
sees the model unserved (a key in Redis, set once), so a request that queued long behind busy workers is not
failed the moment its only worker restarts.
"""

from __future__ import annotations

import logging
import time

import redis

from shared import admission, bus, fleet, keys
from shared.messages import LOAD_PENDING, ModelLoadState, ModelState, WorkerInfo
from shared.settings import Settings

log = logging.getLogger(__name__)


def handle_unserved(r: redis.Redis, settings: Settings) -> int:
    """Order a load (AUTOLOAD) or, past UNSERVED_TIMEOUT, fail the requests queued for each model that no
    worker serves or loads; returns how many requests failed."""
    live = fleet.list_workers(r)
    states = fleet.model_states(r)
    now = time.time()
    failed = 0
    for model in sorted(set(states) | {settings.model} | {w.model for w in live if w.model}):
        since_key = keys.unserved_since_key(model)
        if fleet.serves_or_loads(model, live, states.get(model, [])) or not bus.num_waiting(r, model):
            r.delete(since_key)
            continue
        first = bool(r.set(since_key, now, nx=True))
        if first and settings.autoload and _order_load(r, model, live):
            continue
        cutoff = now - settings.unserved_timeout_s  # fail what came before, once unserved since before
        if float(r.get(since_key) or now) > cutoff:
            continue
        reason = (
            f"no worker serves or loads model {model!r}: the request waited "
            f"{settings.unserved_timeout_s:g} s (UNSERVED_TIMEOUT); load it with POST /v1/models/load"
        )
        count = admission.fail_queued(r, model, reason, settings.stream_ttl_s, queued_before=cutoff)
        if count:
            log.warning("failed %d requests queued for %s: %s", count, model, reason)
        failed += count
    return failed


def _order_load(r: redis.Redis, model: str, live: list[WorkerInfo]) -> bool:
    """AUTOLOAD: record a pending load of `model` for one free worker, which carries it out with its next
    heartbeat (as one whose remote-control command was lost); False when no worker is free."""
    chosen = fleet.pick_workers(live, model, 1)
    if not chosen:
        return False
    pending = ModelState(
        model=model, worker_id=chosen[0].worker_id, state=ModelLoadState.LOADING, stage=LOAD_PENDING,
        updated_at=time.time(),
    )  # fmt: skip
    fleet.publish_model_state(r, pending)
    log.info("AUTOLOAD: requests wait for %s, which nobody serves: %s loads it", model, chosen[0].worker_id)
    return True
