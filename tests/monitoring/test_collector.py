"""Metrics reflect the live worker and the queue, read from the same Redis the worker writes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from devtools.clients import read_sse, submit
from devtools.servers import Process, wait_for
from monitoring.collector import RedisStateCollector
from shared import bus


def tokens_metric(text: str, pid: int) -> float:
    line = next(x for x in text.splitlines() if x.startswith("torchweave_tokens_generated_total{"))
    assert f'-{pid}"' in line
    return float(line.split()[-1])


def test_metrics_show_live_worker_and_its_work(live_url: str, redis_url: str, worker: Process) -> None:
    read_sse(submit(live_url, prompt="count me", max_new_tokens=5)["stream_url"])
    registry = CollectorRegistry()
    registry.register(RedisStateCollector(bus.connect(redis_url), "torchweave-tiny"))
    # The worker publishes its counters with each heartbeat (every 0.5 s in the tests).
    wait_for(lambda: tokens_metric(generate_latest(registry).decode(), worker.pid) >= 5, 10, "token count")
    text = generate_latest(registry).decode()
    assert 'torchweave_workers_live{model="torchweave-tiny"} 1.0' in text
    assert 'torchweave_queue_depth{model="torchweave-tiny"} 0.0' in text
