"""The bus on a real Redis: request hashes, event streams keyed by index, worker heartbeats."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared import admission, bus, fleet, keys, lifecycle
from shared.messages import (
    DoneEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    SamplingParams,
    TokenEvent,
    Usage,
    WorkerInfo,
)


def new_request(model: str = "m") -> GenerationRequest:
    return GenerationRequest(
        request_id=uuid.uuid4().hex, model=model, prompt="p", params=SamplingParams(), created_at=time.time()
    )


def test_request_round_trip_and_state_updates(r: redis.Redis) -> None:
    req = new_request()
    admission.admit(r, [req], ttl_s=60)
    loaded = bus.load_request(r, req.request_id)
    assert loaded == bus.StoredRequest(req, RequestState())
    pipe = r.pipeline()
    bus.update_state(pipe, req.request_id, RequestState(status=RequestStatus.RUNNING, first_token_at=5.0))
    pipe.execute()
    stored = bus.load_request(r, req.request_id)
    assert stored is not None and stored.state == RequestState(
        status=RequestStatus.RUNNING, first_token_at=5.0
    )
    assert 0 < r.ttl(keys.request_key(req.request_id)) <= 60
    assert bus.load_request(r, "missing") is None


def test_events_resume_after_any_index(r: redis.Redis) -> None:
    rid = uuid.uuid4().hex
    pipe = r.pipeline()
    for i, text in enumerate(["a", "b", "c"]):
        bus.append_event(pipe, rid, TokenEvent(index=i, text=text))
    usage = Usage(prompt_tokens=1, completion_tokens=3, total_tokens=4)
    bus.append_event(pipe, rid, DoneEvent(index=3, finish_reason=FinishReason.LENGTH, usage=usage))
    pipe.execute()
    assert [e.index for e in bus.read_events(r, rid)] == [0, 1, 2, 3]
    assert [e.index for e in bus.read_events(r, rid, after_index=1)] == [2, 3]
    assert [e.index for e in bus.read_events(r, rid, after_index=1, block_ms=100)] == [2, 3]
    assert bus.read_events(r, rid, after_index=3, block_ms=50) == []


def test_an_index_cannot_be_written_twice(r: redis.Redis) -> None:
    rid = uuid.uuid4().hex
    pipe = r.pipeline()
    bus.append_event(pipe, rid, TokenEvent(index=0, text="a"))
    pipe.execute()
    pipe = r.pipeline()
    bus.append_event(pipe, rid, TokenEvent(index=0, text="again"))
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert [e.text for e in bus.read_events(r, rid)] == ["a"]  # type: ignore[union-attr]


def test_worker_heartbeat_expires(r: redis.Redis) -> None:
    info = WorkerInfo(
        worker_id=f"t-{uuid.uuid4().hex}",
        host="h",
        pid=1,
        model="m",
        device="cpu",
        dtype="float32",
        vocab_size=10,
        eos_token_id=None,
        max_batch=2,
        max_model_len=64,
        slots_used=0,
        slots_free=2,
        num_steps=0,
        largest_batch=0,
        tokens_generated=0,
        started_at=0.0,
        updated_at=0.0,
    )
    fleet.publish_worker(r, info, ttl_s=1)
    assert info in fleet.list_workers(r)
    time.sleep(1.2)
    assert info not in fleet.list_workers(r)


def test_queue_position_counts_requests_ahead(r: redis.Redis) -> None:
    model = f"m-{uuid.uuid4().hex}"  # a queue of its own
    reqs = [new_request(model) for _ in range(3)]
    for req in reqs:
        admission.admit(r, [req], ttl_s=60)
    assert [bus.queue_position(r, q, ttl_s=60) for q in reqs] == [0, 1, 2]
    lifecycle.claim(r, reqs[0], "w", lease_s=60)
    assert [bus.queue_position(r, q, ttl_s=60) for q in reqs] == [None, 0, 1]
