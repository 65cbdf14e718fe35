"""Reading and writing what workers say about themselves: heartbeats and per-model load states."""

from __future__ import annotations

import time
from typing import Any

import redis

from shared import keys
from shared.bus import Pipeline
from shared.messages import PENDING_FRESH_S, ModelLoadState, ModelState, WorkerInfo


def publish_worker(r: redis.Redis | Pipeline, info: WorkerInfo, ttl_s: int) -> None:
    """Record a worker's heartbeat; it disappears if not renewed within ttl_s."""
    r.set(keys.worker_key(info.worker_id), info.model_dump_json(), ex=ttl_s)


def remove_worker(r: redis.Redis, worker_id: str) -> None:
    r.delete(keys.worker_key(worker_id))


def list_workers(r: redis.Redis) -> list[WorkerInfo]:
    """Every worker whose heartbeat has not expired, sorted by id."""
    names = sorted(r.scan_iter(match=keys.WORKER_PATTERN, count=1000))
    values: list[str | None] = r.mget(names) if names else []  # type: ignore[assignment]
    return [WorkerInfo.model_validate_json(v) for v in values if v is not None]


def publish_model_state(r: redis.Redis, state: ModelState) -> None:
    """Record one worker's state with one model and announce it on the model events stream."""
    pipe = r.pipeline(transaction=False)
    pipe.sadd(keys.MODELS, state.model)
    pipe.hset(keys.model_state_key(state.model), state.worker_id, state.model_dump_json())
    pipe.xadd(keys.MODEL_EVENTS, {"data": state.model_dump_json()}, maxlen=1000, approximate=True)
    pipe.execute()


def model_states(r: redis.Redis) -> dict[str, list[ModelState]]:
    """Every known model's per-worker states (workers that are gone included; callers filter)."""
    client: Any = r
    names = sorted(client.smembers(keys.MODELS))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hvals(keys.model_state_key(name))
    return {
        name: [ModelState.model_validate_json(v) for v in values]
        for name, values in zip(names, pipe.execute(), strict=True)
    }


def pick_workers(live: list[WorkerInfo], model: str, count: int) -> list[WorkerInfo]:
    """Up to `count` of the live workers that neither serve nor load `model`: idle ones first, then
    the least recently used (a worker's current model is unloaded to make room)."""
    candidates = [w for w in live if w.model != model and w.state != "loading" and w.node]
    candidates.sort(key=lambda w: (w.state != "idle", w.slots_used, w.last_request_at))
    return candidates[:count]


def serves_or_loads(model: str, live: list[WorkerInfo], states: list[ModelState]) -> bool:
    """Whether some worker serves `model` or will soon: a live worker's heartbeat names it, or a load
    of it reported progress (or was ordered) within PENDING_FRESH_S, by a worker whose first heartbeat
    may still be to come."""
    if any(w.model == model and w.state != "idle" and not is_unloading(w, states) for w in live):
        return True
    fresh = time.time() - PENDING_FRESH_S
    return any(s.state is ModelLoadState.LOADING and s.updated_at > fresh for s in states)


def states_of(r: redis.Redis, model: str) -> list[ModelState]:
    """One model's per-worker states (workers that are gone included)."""
    client: Any = r
    return [ModelState.model_validate_json(v) for v in client.hvals(keys.model_state_key(model))]


def is_unloading(worker: WorkerInfo, states: list[ModelState]) -> bool:
    """Whether an unload of the worker's model was ordered (or done) since its last heartbeat: it serves
    that model no longer, whatever the heartbeat still says."""
    return any(
        s.worker_id == worker.worker_id
        and s.model == worker.model
        and s.state is ModelLoadState.UNLOADED
        and s.updated_at >= worker.updated_at
        for s in states
    )


RECENT_TTFTS = 200


def note_ttft(pipe: Pipeline, model: str, ttft_s: float) -> None:
    """Queue one more time to first token into the model's recent ones (the newest RECENT_TTFTS)."""
    key = keys.recent_ttft_key(model)
    pipe.lpush(key, round(ttft_s, 6))
    pipe.ltrim(key, 0, RECENT_TTFTS - 1)


def recent_ttfts(r: redis.Redis, models: list[str]) -> dict[str, list[float]]:
    """Each model's recent times to first token, in seconds, newest first (one round trip)."""
    pipe: Any = r.pipeline(transaction=False)
    for model in models:
        pipe.lrange(keys.recent_ttft_key(model), 0, -1)
    return {model: [float(v) for v in values] for model, values in zip(models, pipe.execute(), strict=True)}


def forget_model_states(r: redis.Redis, model: str, worker_ids: list[str]) -> None:
    """Remove some workers' records of one model."""
    if worker_ids:
        r.hdel(keys.model_state_key(model), *worker_ids)


def forget_model(r: redis.Redis, model: str) -> None:
    """Remove a model from the known models, with whatever records it has left."""
    pipe = r.pipeline(transaction=False)
    pipe.srem(keys.MODELS, model)
    pipe.delete(keys.model_state_key(model))
    pipe.execute()


def read_model_events(r: redis.Redis, after: str, block_ms: int) -> list[tuple[str, ModelState]]:
    """Model state changes after stream id `after` ("$": only new ones), waiting up to block_ms."""
    client: Any = r
    reply = client.xread({keys.MODEL_EVENTS: after}, block=block_ms, count=100)
    return [
        (entry_id, ModelState.model_validate_json(fields["data"]))
        for _, entries in reply or []
        for entry_id, fields in entries
    ]
