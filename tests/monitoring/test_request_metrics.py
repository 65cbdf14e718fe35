"""The exporter forgets a stopped worker's series once its heartbeat has been gone METRICS_RETENTION
seconds (by the exporter's clock), and keeps a live worker's and the queue-level ones."""

from __future__ import annotations

import time

import pytest
import redis

from monitoring.request_metrics import RequestMetricsCollector
from shared import bus, fleet, keys, metrics
from shared.messages import WorkerInfo

MODEL = "m"


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    client = bus.connect(redis_url.rsplit("/", 1)[0] + "/13")  # a database of its own: flushed
    client.flushdb()
    return client


def heartbeat(r: redis.Redis, worker_id: str) -> None:
    now = time.time()
    info = WorkerInfo(
        worker_id=worker_id, host="h", pid=1, model=MODEL, device="cpu", dtype="float32", vocab_size=10,
        eos_token_id=None, max_batch=1, max_model_len=8, slots_used=0, slots_free=1, num_steps=0,
        largest_batch=0, tokens_generated=0, started_at=now, updated_at=now,
    )  # fmt: skip
    fleet.publish_worker(r, info, ttl_s=60)


def workers_exported(collector: RequestMetricsCollector) -> set[str]:
    return {
        s.labels["worker"]
        for family in collector.collect()
        if family.name == "vllm:generation_tokens"
        for s in family.samples
    }


def test_a_stopped_workers_series_go_after_the_retention_and_no_others(r: redis.Redis) -> None:
    tally = metrics.Tally()
    for worker in ("stopped", "live", ""):  # "": counted outside any worker (a request cancelled in queue)
        tally.count(metrics.GENERATION_TOKENS, {"model_name": MODEL, "worker": worker}, 5)
        tally.observe(metrics.TTFT, {"model_name": MODEL, "worker": worker}, 0.1)
    tally.flush(r)
    heartbeat(r, "live")
    now = [1000.0]
    collector = RequestMetricsCollector(r, MODEL, retention_s=60.0, clock=lambda: now[0])
    assert workers_exported(collector) == {"stopped", "live", ""}  # first seen stopped at 1000
    now[0] = 1059.0
    assert workers_exported(collector) == {"stopped", "live", ""}
    now[0] = 1060.0
    assert workers_exported(collector) == {"live", ""}
    remaining = {s.labels["worker"] for s in metrics.read(r)}
    assert remaining == {"live", ""}  # deleted from Redis, histogram fields included
    assert not any('"stopped"' in field for field in r.hkeys(keys.METRICS))


def test_a_worker_that_comes_back_starts_its_wait_again(r: redis.Redis) -> None:
    tally = metrics.Tally()
    tally.count(metrics.GENERATION_TOKENS, {"model_name": MODEL, "worker": "w"}, 1)
    tally.flush(r)
    now = [0.0]
    collector = RequestMetricsCollector(r, MODEL, retention_s=60.0, clock=lambda: now[0])
    workers_exported(collector)  # gone since 0
    now[0] = 50.0
    heartbeat(r, "w")
    assert workers_exported(collector) == {"w"}
    fleet.remove_worker(r, "w")
    now[0] = 100.0  # gone again, since 100: not 60 s yet
    assert workers_exported(collector) == {"w"}
    now[0] = 160.0
    assert workers_exported(collector) == set()
