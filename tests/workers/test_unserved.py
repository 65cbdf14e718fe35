"""Requests waiting for a model nobody serves, on a real Redis: they fail once UNSERVED_TIMEOUT has passed
(never before), or with AUTOLOAD a free worker is told to load the model."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from shared import admission, bus, fleet, keys
from shared.messages import (
    LOAD_PENDING,
    ErrorEvent,
    GenerationRequest,
    ModelLoadState,
    ModelState,
    RequestStatus,
    SamplingParams,
    WorkerInfo,
)
from shared.settings import settings_from_env
from workers.unserved import handle_unserved


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """The shared/ tests' database: no worker process lives on it, so only these calls reap."""
    client = bus.connect(redis_url.rsplit("/", 1)[0] + "/5")
    yield client
    for key in client.scan_iter(match=keys.worker_key("unserved-*")):
        client.delete(key)


def worker(r: redis.Redis, model: str, state: str = "ready") -> WorkerInfo:
    """A live worker's heartbeat (`model` '' and state idle: it serves nothing)."""
    info = WorkerInfo(
        worker_id=f"unserved-{uuid.uuid4().hex}", host="h", pid=1, model=model, device="cpu", dtype="float32",
        vocab_size=10, eos_token_id=None, max_batch=2, max_model_len=64, slots_used=0, slots_free=2,
        num_steps=0, largest_batch=0, tokens_generated=0, started_at=0.0, updated_at=time.time(),
        node="unserved@h", state=state,  # type: ignore[arg-type]
    )  # fmt: skip
    fleet.publish_worker(r, info, ttl_s=60)
    return info


def waiting_for_unloaded_model(r: redis.Redis, worker_id: str) -> GenerationRequest:
    """A queued request for a model of its own that `worker_id` has just unloaded."""
    model = f"m-{uuid.uuid4().hex}"
    fleet.publish_model_state(
        r, ModelState(model=model, worker_id=worker_id, state=ModelLoadState.UNLOADED, updated_at=time.time())
    )
    req = GenerationRequest(
        request_id=uuid.uuid4().hex, model=model, prompt="p", params=SamplingParams(), created_at=time.time()
    )
    admission.admit(r, [req], ttl_s=60)
    return req


def status(r: redis.Redis, req: GenerationRequest) -> RequestStatus:
    stored = bus.load_request(r, req.request_id)
    assert stored is not None
    return stored.state.status


def test_a_request_for_a_model_nobody_serves_fails_once_the_bound_has_passed(r: redis.Redis) -> None:
    idle = worker(r, "", "idle")
    req = waiting_for_unloaded_model(r, idle.worker_id)
    settings = settings_from_env({"UNSERVED_TIMEOUT": "1"})
    handle_unserved(r, settings)
    assert status(r, req) is RequestStatus.QUEUED  # it has not waited the bound yet
    time.sleep(1.1)
    handle_unserved(r, settings)
    assert status(r, req) is RequestStatus.FAILED
    [event] = bus.read_events(r, req.request_id)
    assert isinstance(event, ErrorEvent)
    assert "UNSERVED_TIMEOUT" in event.message and req.model in event.message
    handle_unserved(r, settings)
    assert r.get(keys.unserved_since_key(req.model)) is None  # nothing waits now: the clock is reset


def test_a_request_for_a_served_model_never_fails_however_long_it_waits(r: redis.Redis) -> None:
    idle = worker(r, "", "idle")
    req = waiting_for_unloaded_model(r, idle.worker_id)
    worker(r, req.model)  # another worker serves it
    settings = settings_from_env({"UNSERVED_TIMEOUT": "0.1"})
    time.sleep(0.2)
    handle_unserved(r, settings)
    assert status(r, req) is RequestStatus.QUEUED
    assert r.get(keys.unserved_since_key(req.model)) is None


def test_with_autoload_a_free_worker_is_told_to_load_the_model_instead(r: redis.Redis) -> None:
    idle = worker(r, "", "idle")
    req = waiting_for_unloaded_model(r, idle.worker_id)
    settings = settings_from_env({"UNSERVED_TIMEOUT": "0.1", "AUTOLOAD": "1"})
    handle_unserved(r, settings)
    [pending] = [s for s in fleet.states_of(r, req.model) if s.state is ModelLoadState.LOADING]
    assert pending.stage == LOAD_PENDING and pending.worker_id.startswith("unserved-")
    time.sleep(0.2)
    handle_unserved(r, settings)  # a load is under way: the request waits for it
    assert status(r, req) is RequestStatus.QUEUED
