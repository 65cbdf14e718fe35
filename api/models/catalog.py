"""What the API knows about models: which workers serve or load each, and how to start a load.

Loads go to workers by Celery remote control (a command the workers register); each worker
reports its progress to Redis, which is all this module reads.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from api import context
from api.errors import ApiError
from shared import bus, fleet, keys
from shared.messages import (
    LOAD_PENDING,
    PENDING_FRESH_S,
    UNLOAD_PENDING,
    ModelLoadState,
    ModelState,
    WorkerInfo,
)
from shared.model_names import InvalidModelName, check_model_name


def checked_name(name: str) -> str:
    """The model name if it is safe to load, else a 400 saying why (path traversal, a bad Hub id)."""
    try:
        return check_model_name(name, context.settings())
    except InvalidModelName as exc:
        raise ApiError(400, str(exc), param="model", code="invalid_model_name") from None


def summaries(r: redis.Redis, live_workers: list[WorkerInfo] | None = None) -> dict[str, dict[str, Any]]:
    """Every known model: its overall state, per-worker states and queue depth (`live_workers`: the
    live workers, when the caller has them already).

    Overall: ready when a live worker serves it (and was not told to unload it), else loading when one
    loads it, else failed when a load failed (with the reasons), else unloaded. `per_worker` holds only
    the live workers' current records, oldest first.
    """
    workers = {w.worker_id: w for w in (fleet.list_workers(r) if live_workers is None else live_workers)}
    states = _without_old_failures(r, fleet.model_states(r), workers)
    for w in workers.values():  # a worker started with MODEL has no load record: it is ready
        if w.model and w.model not in states:
            states[w.model] = []
    out: dict[str, dict[str, Any]] = {}
    for name, per_worker in sorted(states.items()):
        live = sorted(
            (s for s in per_worker if s.worker_id in workers and _current(s, workers[s.worker_id])),
            key=lambda s: s.updated_at,
        )
        serving = {
            w.worker_id
            for w in workers.values()
            if w.model == name and w.state == "ready" and not fleet.is_unloading(w, per_worker)
        }
        serving |= {s.worker_id for s in live if s.state is ModelLoadState.READY}
        loading = [s for s in live if s.state is ModelLoadState.LOADING and s.worker_id not in serving]
        latest = max(per_worker, key=lambda s: s.updated_at, default=None)
        if serving:
            state = "ready"
        elif loading:
            state = "loading"
        elif latest is not None and latest.state is ModelLoadState.FAILED:
            state = "failed"
        else:
            state = "unloaded"
        out[name] = {
            "state": state,
            "workers": sorted(serving),
            "progress": max((s.progress for s in loading), default=100.0 if serving else 0.0),
            "stage": loading[0].stage if loading else state,
            "bytes_downloaded": sum(s.bytes_downloaded for s in loading),
            "reason": latest.reason if state == "failed" and latest is not None else None,
            "queued": bus.num_waiting(r, name),
            "created": int(min((workers[w].started_at for w in serving), default=0)),
            "per_worker": [s.model_dump(mode="json", exclude={"v"}) for s in live],
        }
    return out


CALLABLE = ("ready", "loading")  # a request for a model in these states runs (when loading: once loaded)


def live_states(r: redis.Redis) -> list[ModelState]:
    """What the live workers do with each model now, oldest change first: the records of workers that
    stopped (their heartbeat expired) and records a worker's later heartbeat contradicts are left out."""
    workers = {w.worker_id: w for w in fleet.list_workers(r)}
    return sorted(
        (
            s
            for states in fleet.model_states(r).values()
            for s in states
            if s.worker_id in workers and _current(s, workers[s.worker_id])
        ),
        key=lambda s: s.updated_at,
    )


def _without_old_failures(
    r: redis.Redis, states: dict[str, list[ModelState]], workers: dict[str, WorkerInfo]
) -> dict[str, list[ModelState]]:
    """The states, after forgetting failed loads older than FAILED_LOAD_TTL (a name that never existed
    would otherwise stay listed forever); a model left with no record and no worker is forgotten."""
    cutoff = time.time() - context.settings().failed_load_ttl_s
    kept: dict[str, list[ModelState]] = {}
    for name, per_worker in states.items():
        old = [s for s in per_worker if s.state is ModelLoadState.FAILED and s.updated_at < cutoff]
        if old:
            fleet.forget_model_states(r, name, [s.worker_id for s in old])
        rest = [s for s in per_worker if s not in old]
        if rest or any(w.model == name for w in workers.values()):
            kept[name] = rest
        elif old:
            fleet.forget_model(r, name)
    return kept


def _current(state: ModelState, worker: WorkerInfo) -> bool:
    """Whether a worker's record still describes it. A record newer than the worker's last heartbeat
    does; an older one only if the heartbeat agrees (a worker that moved on leaves stale records).
    A pending load counts while fresh: the command is on its way."""
    if state.updated_at >= worker.updated_at:
        return True
    if state.state is ModelLoadState.READY:
        return worker.model == state.model and worker.state == "ready"
    if state.state is ModelLoadState.LOADING:
        loading_it = worker.state == "loading" and worker.model == state.model
        return loading_it or time.time() - state.updated_at < PENDING_FRESH_S
    return True


def state_of(r: redis.Redis, model: str) -> str | None:
    """A model's overall state (ready, loading, failed, unloaded), or None if it was never seen."""
    info = summaries(r).get(model)
    return None if info is None else str(info["state"])


def start_load(model: str, count: int) -> list[WorkerInfo]:
    """Tell `count` workers to load `model`; 400 past the live worker count, 409 when no worker is free."""
    r = context.redis_client()
    live = fleet.list_workers(r)
    if count > len(live):
        raise ApiError(400, f"workers: {count} asked for, but {len(live)} workers are live",
                       param="workers", code="too_many_workers")  # fmt: skip
    chosen = fleet.pick_workers(live, model, count)
    if not chosen:
        raise ApiError(409, f"no worker is free to load {model!r}: every live worker serves it or is loading",
                       param="model", code="no_free_worker")  # fmt: skip
    _command(r, chosen, model, keys.LOAD_MODEL_COMMAND, ModelLoadState.LOADING, LOAD_PENDING)
    return chosen


def start_unload(model: str) -> list[WorkerInfo]:
    """Tell every worker that serves or loads `model` to unload it; 404 when none does.

    The model's records count as well as the heartbeats: a load that just finished is ready in
    its record before the worker's next heartbeat says so.
    """
    r = context.redis_client()
    live = fleet.list_workers(r)
    recorded = set(summaries(r, live).get(model, {}).get("workers", []))
    serving = [w for w in live if (w.model == model or w.worker_id in recorded) and w.node]
    if not serving:
        raise ApiError(404, f"no worker serves {model!r}", param="model", code="model_not_found")
    _command(r, serving, model, keys.UNLOAD_MODEL_COMMAND, ModelLoadState.UNLOADED, UNLOAD_PENDING)
    return serving


def _command(
    r: redis.Redis, workers: list[WorkerInfo], model: str, command: str, state: ModelLoadState, stage: str
) -> None:
    """Record the pending load or unload for each worker, then send it the remote-control command.

    The record comes first, so GET /v1/models shows it at once, and a worker whose command is
    lost (it was not listening yet) carries it out with its next heartbeat.
    """
    for w in workers:
        pending = ModelState(
            model=model, worker_id=w.worker_id, state=state, stage=stage, updated_at=time.time()
        )
        fleet.publish_model_state(r, pending)
        context.celery().control.broadcast(
            command, arguments={"model": model}, destination=[w.node], reply=False
        )
