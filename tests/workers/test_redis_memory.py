"""What a request leaves in Redis, on a real Redis: a running request's keys never expire, a finished one's
do, and the marks that keep metric flushes exactly-once stay one key per worker however many steps run. A
worker started on a Redis that may evict keys warns at once."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from devtools.embedded_redis import EmbeddedRedis
from shared import admission, bus, keys, lifecycle, metrics, timeline
from shared.messages import FinishReason, GenerationRequest, SamplingParams, Usage
from shared.settings import Settings
from workers.model_loader import LoadedModel
from workers.request_stream import ActiveRequest, StreamWrites
from workers.runtime import WorkerRuntime
from workers.text_output import TextOutput

TTL_S = 300


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return bus.connect(redis_url.rsplit("/", 1)[0] + "/14")  # a database of its own: no reaper here


def queued(r: redis.Redis) -> GenerationRequest:
    request = GenerationRequest(request_id=uuid.uuid4().hex, model=f"m-{uuid.uuid4().hex}", prompt="p",
                                params=SamplingParams(ignore_eos=True), created_at=time.time())  # fmt: skip
    admission.admit(r, [request], ttl_s=TTL_S)
    timeline.record(r, request.request_id, "submitted", TTL_S)
    return request


def ttls(r: redis.Redis, request_id: str) -> dict[str, int]:
    """Seconds left of the record, the stream and the timeline: -1 none (never expires), -2 no key."""
    names = {"record": keys.request_key, "stream": keys.stream_key, "timeline": keys.timeline_key}
    return {name: int(r.ttl(key(request_id))) for name, key in names.items()}


def running(r: redis.Redis, tiny: LoadedModel, worker: str = "w1") -> tuple[GenerationRequest, ActiveRequest]:
    """A queued request claimed by `worker`, with its first tokens written."""
    request = queued(r)
    epoch = lifecycle.claim(r, request, worker, lease_s=60)
    assert epoch
    timeline.record(r, request.request_id, "claimed", TTL_S, worker=worker)
    active = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer), epoch=epoch)
    step(r, active, [5, 6], worker, first=True)
    return request, active


def step(
    r: redis.Redis, active: ActiveRequest, token_ids: list[int], worker: str, first: bool = False
) -> None:
    """One step's writes (with the admission and first token when `first`) in one round trip."""
    writes = StreamWrites(worker, ttl_s=TTL_S)
    if first:
        writes.admitted(active, step=1)
        writes.start(active, started_at=time.time(), first_token_at=time.time())
    for token_id in token_ids:
        writes.token(active, time.time())
        active.pending_ids.append(token_id)
        writes.text(active, active.output.push(token_id))
    writes.apply(r, lambda: False)


def test_a_queued_request_expires_a_running_one_never_does_and_a_finished_one_does(
    r: redis.Redis, tiny: LoadedModel
) -> None:
    waiting = queued(r)
    left = ttls(r, waiting.request_id)
    assert 0 < left["record"] <= TTL_S and 0 < left["timeline"] <= TTL_S  # unclaimed for TTL: gone

    request, active = running(r, tiny)
    rid = request.request_id
    assert ttls(r, rid) == {"record": -1, "stream": -1, "timeline": -1}
    step(r, active, [7, 8], "w1")  # later steps and timeline steps give it no expiry either
    timeline.record(r, rid, "draining", TTL_S)
    assert ttls(r, rid) == {"record": -1, "stream": -1, "timeline": -1}

    writes = StreamWrites("w1", ttl_s=TTL_S)
    writes.end(active, FinishReason.LENGTH, Usage.of(1, 4), time.time())
    writes.apply(r, lambda: False)
    assert all(0 < left <= TTL_S for left in ttls(r, rid).values()), ttls(r, rid)


def test_a_requeued_request_expires_as_a_queued_one_until_claimed_and_a_failed_one_expires(
    r: redis.Redis, tiny: LoadedModel
) -> None:
    request, _ = running(r, tiny)
    rid = request.request_id
    assert lifecycle.requeue(r, request, holder="w1", max_attempts=3, ttl_s=TTL_S) == "requeued"
    assert all(0 < left <= TTL_S for left in ttls(r, rid).values()), ttls(r, rid)
    assert lifecycle.claim(r, request, "w2", lease_s=-1)  # a lease already run out: its worker died
    assert ttls(r, rid) == {"record": -1, "stream": -1, "timeline": -1}
    assert lifecycle.requeue(r, request, holder=None, max_attempts=1, ttl_s=TTL_S) == "failed"
    assert all(0 < left <= TTL_S for left in ttls(r, rid).values()), ttls(r, rid)


def flush_keys(r: redis.Redis) -> list[str]:
    """Every key the metric flushes write besides the metrics hash itself."""
    return sorted(k for k in r.scan_iter(f"{keys.METRICS}:*", count=1000))


def generated(r: redis.Redis, model: str) -> float:
    return sum(
        s.total
        for s in metrics.read(r)
        if s.family is metrics.GENERATION_TOKENS and s.labels["model_name"] == model
    )


def test_metric_flushes_leave_one_key_per_worker_and_a_retried_flush_counts_once(
    r: redis.Redis, tiny: LoadedModel
) -> None:
    r.flushdb()
    num_steps = 300
    # Two requests on two threads of worker w1 (each thread a lane of its own), one on w2.
    actives = [(running(r, tiny, worker)[1], worker) for worker in ("w1", "w1", "w2")]

    def run_steps(active: ActiveRequest, worker: str) -> None:
        for _ in range(num_steps):
            step(r, active, [9], worker)

    threads = [threading.Thread(target=run_steps, args=pair) for pair in actives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # 3 x 300 steps, two threads of one worker: one key per worker (a marker per flush left 900).
    assert flush_keys(r) == [keys.metrics_marks_key("w1"), keys.metrics_marks_key("w2")]
    assert r.hlen(keys.metrics_marks_key("w1")) == 3  # a lane per thread: the two above and this one
    assert 0 < r.ttl(keys.metrics_marks_key("w1")) <= metrics.MARKS_TTL_S

    # A reply lost after Redis applied a step's writes: the same writes are applied again (as
    # StreamWrites.apply does while Redis is unreachable), and a later flush was applied in between.
    a = actives[0][0]
    model = a.request.model
    before = generated(r, model)
    lost = StreamWrites("w1", ttl_s=TTL_S)
    lost.token(a, time.time())
    a.pending_ids.append(11)
    lost.text(a, a.output.push(11))
    lost.apply(r, lambda: False)
    step(r, a, [12], "w1")
    lost.apply(r, lambda: False)
    lost.apply(r, lambda: False)
    assert generated(r, model) == before + 2  # each token once
    assert generated(r, model) == 2 + num_steps + 2  # and nothing of the threads' steps lost
    assert all(generated(r, active.request.model) == 2 + num_steps for active, _ in actives[1:])


def test_a_worker_started_on_an_evicting_redis_warns(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", maxmemory_policy="volatile-lru").start()
    settings = Settings(redis_url=server.url, cache_dir=cache_dir, device="cpu", dtype="fp32")
    runtime = WorkerRuntime(settings, enqueue=lambda _: None, consume=lambda *_: None)
    try:
        with caplog.at_level(logging.WARNING, logger="workers.runtime"):
            runtime.start()
        assert any("maxmemory-policy is 'volatile-lru'" in rec.getMessage() for rec in caplog.records)
    finally:
        runtime.stop()
        server.stop()
