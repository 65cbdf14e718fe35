"""A Prometheus collector for vLLM's request metrics: the counters and histograms workers keep in Redis
(shared/metrics.py), and the gauges their heartbeats carry.

Any number of workers on any number of hosts add to the same Redis hash, so one scrape of this
exporter sees every worker's totals, including those of workers that have since died or restarted.
A worker whose heartbeat has been gone for METRICS_RETENTION seconds has its series deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from shared import fleet, keys, metrics
from shared.messages import WorkerInfo

WORKER_LABELS = ["model_name", "worker"]


class RequestMetricsCollector:
    """vllm:* and torchweave_requests_* series, read from Redis at each scrape."""

    def __init__(
        self,
        client: redis.Redis,
        default_model: str,
        retention_s: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = client
        self.default_model = default_model
        self.retention_s = retention_s
        self.clock = clock
        self._gone_since: dict[str, float] = {}  # worker id -> when a scrape first found no heartbeat

    def collect(self) -> Iterator[Metric]:
        workers = fleet.list_workers(self.redis)
        yield from self._stored({w.worker_id for w in workers})
        yield from self._gauges([w for w in workers if w.model])

    def _stored(self, live: set[str]) -> Iterator[Metric]:
        by_family: dict[str, list[metrics.Series]] = {f.name: [] for f in metrics.FAMILIES}
        stored = metrics.read(self.redis)
        expired = self._expired({s.labels.get("worker", "") for s in stored} - live - {""})
        if expired:
            metrics.forget_workers(self.redis, expired)
        for series in stored:
            if series.labels.get("worker") not in expired:
                by_family[series.family.name].append(series)
        for family in metrics.FAMILIES:
            found = by_family[family.name]
            names = sorted({k for s in found for k in s.labels} | set(WORKER_LABELS))
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.help, labels=names)
                for s in found:
                    counter.add_metric([s.labels.get(k, "") for k in names], s.total)
                yield counter
                continue
            histogram = HistogramMetricFamily(family.name, family.help, labels=names)
            for s in found:
                buckets = [(_le(bound), count) for bound, count in (s.buckets or {}).items()]
                histogram.add_metric([s.labels.get(k, "") for k in names], buckets, s.sum)
            yield histogram

    def _expired(self, gone: set[str]) -> set[str]:
        """The stopped workers (series but no heartbeat) first seen stopped retention_s ago or more. An
        exporter counts from its own first sight, so a restarted exporter waits the retention again."""
        now = self.clock()
        self._gone_since = {w: self._gone_since.get(w, now) for w in gone}
        return {w for w, since in self._gone_since.items() if now - since >= self.retention_s}

    def _gauges(self, workers: list[WorkerInfo]) -> Iterator[Metric]:
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests in engine steps",
                                    labels=WORKER_LABELS)  # fmt: skip
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting",
            "Requests waiting: in a model's queue (no worker label), or held by an engine not stepping them",
            labels=WORKER_LABELS,
        )
        kv = GaugeMetricFamily("vllm:kv_cache_usage_perc", "Share of KV-cache blocks in use, 0 to 1",
                               labels=WORKER_LABELS)  # fmt: skip
        state = GaugeMetricFamily("torchweave_worker_state", "1 for each live worker, by its state",
                                  labels=[*WORKER_LABELS, "state"])  # fmt: skip
        for w in workers:
            labels = [w.model, w.worker_id]
            running.add_metric(labels, w.num_running)
            waiting.add_metric(labels, w.num_waiting)
            kv.add_metric(labels, w.kv_cache_usage)
            state.add_metric([*labels, w.state], 1)
        for model in sorted({self.default_model} | {w.model for w in workers}):
            waiting.add_metric([model, ""], int(self.redis.zcard(keys.waiting_key(model))))
        yield from (running, waiting, kv, state)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
