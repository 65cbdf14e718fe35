"""A Prometheus collector that reads the live state of TorchWeave from Redis at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shared import fleet, keys


class RedisStateCollector:
    """Worker heartbeats become per-worker gauges and counters; Celery queue lengths become queue depth."""

    def __init__(self, client: redis.Redis, default_model: str) -> None:
        self.redis = client
        self.default_model = default_model

    def collect(self) -> Iterator[Metric]:
        workers = fleet.list_workers(self.redis)
        labels = ["worker", "model"]
        live = GaugeMetricFamily(
            "torchweave_workers_live", "Workers with a fresh heartbeat", labels=["model"]
        )
        used = GaugeMetricFamily("torchweave_slots_used", "Batch slots holding a request", labels=labels)
        free = GaugeMetricFamily("torchweave_slots_free", "Batch slots free", labels=labels)
        largest = GaugeMetricFamily(
            "torchweave_largest_batch", "Most requests in one engine step", labels=labels
        )
        steps = CounterMetricFamily("torchweave_engine_steps", "Engine steps run", labels=labels)
        tokens = CounterMetricFamily("torchweave_tokens_generated", "Tokens generated", labels=labels)
        models = {self.default_model} | {w.model for w in workers}
        for model in sorted(models):
            live.add_metric([model], sum(1 for w in workers if w.model == model))
        for w in workers:
            values = [w.worker_id, w.model]
            used.add_metric(values, w.slots_used)
            free.add_metric(values, w.slots_free)
            largest.add_metric(values, w.largest_batch)
            steps.add_metric(values, w.num_steps)
            tokens.add_metric(values, w.tokens_generated)
        depth = GaugeMetricFamily(
            "torchweave_queue_depth", "Requests waiting in a model's queue", labels=["model"]
        )
        for model in sorted(models):
            # Celery's Redis transport keeps each queue as a list named after it.
            depth.add_metric([model], int(self.redis.llen(keys.queue_name(model))))
        yield from (live, used, free, largest, steps, tokens, depth)
