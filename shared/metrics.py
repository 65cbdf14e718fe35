"""Request metrics that outlive the process that counted them: counters and histograms kept in Redis.

Workers run on many hosts and restart; a counter held in a worker's memory would drop to zero
with it and leave its last increments unscraped. So every worker adds its observations to one
Redis hash (the one thing every process reaches), in the same round trip as the stream events
they describe, and the exporter (monitoring/) renders the hash at each scrape. A total is then
exactly what clients were sent, whichever worker died in between.

Names and bucket bounds are vLLM's, so dashboards and alerts written for vLLM work unchanged.
A flush that may be applied again (workers/redis_writes.py retries a step's writes after a lost reply)
carries a mark: its thread's lane and the lane's next number. A lane's flushes are applied one at a time,
in order, so Redis keeps only the last number applied per lane, in one hash per worker: a flush whose
number is not above it was applied already and adds nothing twice. One key per worker, a field per
thread, however many steps (a marker key per flush left about 12,000 keys per worker).
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from shared import keys
from shared.scripts import run_script

# vLLM's buckets (vllm/v1/metrics/loggers.py), so histogram_quantile over them reads the same.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0)  # fmt: skip
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                   120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


@dataclass(frozen=True)
class Family:
    """One exported metric: its name as Prometheus shows it (counters without `_total`), help, kind."""

    name: str
    help: str
    kind: str  # "counter" or "histogram"
    buckets: tuple[float, ...] = ()


TTFT = Family("vllm:time_to_first_token_seconds", "Time from arrival to the first token", "histogram",
              TTFT_BUCKETS)  # fmt: skip
ITL = Family("vllm:inter_token_latency_seconds", "Time between two tokens of a request", "histogram",
             ITL_BUCKETS)  # fmt: skip
E2E = Family("vllm:e2e_request_latency_seconds", "Time from arrival to the end", "histogram",
             REQUEST_BUCKETS)  # fmt: skip
QUEUE = Family("vllm:request_queue_time_seconds", "Time from arrival until a worker admitted it",
               "histogram", REQUEST_BUCKETS)  # fmt: skip
PREFILL = Family("vllm:request_prefill_time_seconds", "Time from admission to the first token",
                 "histogram", REQUEST_BUCKETS)  # fmt: skip
DECODE = Family("vllm:request_decode_time_seconds", "Time from the first token to the end", "histogram",
                REQUEST_BUCKETS)  # fmt: skip
PROMPT_TOKENS = Family("vllm:prompt_tokens", "Prompt tokens of finished requests", "counter")
GENERATION_TOKENS = Family(
    "vllm:generation_tokens", "Tokens generated, counted as they are streamed", "counter"
)
SUCCESS = Family("vllm:request_success", "Requests that ended, by finished_reason", "counter")
HANDED_OVER = Family("torchweave_requests_handed_over", "Requests requeued because their worker died "
                     "(another worker resumes them)", "counter")  # fmt: skip
REQUEUED = Family("torchweave_requests_requeued", "Requests put back on their queue, by reason "
                  "(worker_lost, handed_back, redispatched)", "counter")  # fmt: skip
FAMILIES = (TTFT, ITL, E2E, QUEUE, PREFILL, DECODE, PROMPT_TOKENS, GENERATION_TOKENS, SUCCESS, HANDED_OVER,
            REQUEUED)  # fmt: skip
_BY_NAME = {f.name: f for f in FAMILIES}
MARKS_TTL_S = 600  # a worker's marks outlive any retry of its writes: they expire 600 s after its last flush

# KEYS: the metrics hash, the worker's marks. ARGV: marks ttl, lane, number, then field/increment pairs.
_FLUSH = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or 0) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: the metrics hash. ARGV: field/increment pairs.
_ADD = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
"""


@dataclass(frozen=True)
class FlushMark:
    """What makes one flush apply at most once: the worker, its thread's lane, and the flush's number."""

    worker_id: str
    lane: str
    number: int


class _Lane(threading.local):
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.number = 0


_lane = _Lane()


def next_mark(worker_id: str) -> FlushMark:
    """The mark of this thread's next flush. Take it when the flush is first applied, never earlier: a
    lane's numbers must reach Redis in order (a smaller number after a larger one would be dropped)."""
    _lane.number += 1
    return FlushMark(worker_id, _lane.id, _lane.number)


def _field(family: Family, labels: dict[str, str], part: str) -> str:
    return json.dumps([family.name, sorted(labels.items()), part], separators=(",", ":"))


class Tally:
    """Observations gathered in memory until one flush adds them all to Redis."""

    def __init__(self) -> None:
        self._incr: defaultdict[str, float] = defaultdict(float)

    def __bool__(self) -> bool:
        return bool(self._incr)

    def count(self, family: Family, labels: dict[str, str], by: float = 1.0) -> None:
        """Add `by` to a counter."""
        self._incr[_field(family, labels, "total")] += by

    def observe(self, family: Family, labels: dict[str, str], value: float) -> None:
        """One observation into a histogram: its bucket (the first bound at or above it) and its sum."""
        i = bisect.bisect_left(family.buckets, value)
        bound = repr(family.buckets[i]) if i < len(family.buckets) else "+Inf"
        self._incr[_field(family, labels, bound)] += 1
        self._incr[_field(family, labels, "sum")] += value

    def increments(self) -> dict[str, float]:
        """Every observation so far, as the metrics hash's fields and the amounts to add to them."""
        return dict(self._incr)

    def flush(self, pipe: Any, mark: FlushMark | None = None) -> None:
        """Queue the addition of every observation so far (on a client: do it). Given a mark, queueing the
        same tally again after a lost reply is safe: Redis adds it at most once."""
        if not self._incr:
            return
        pairs = [x for field, amount in self._incr.items() for x in (field, repr(amount))]
        if mark is None:  # applied once by whoever calls this: nothing to guard
            run_script(pipe, _ADD, [keys.METRICS], *pairs)
            return
        marks = keys.metrics_marks_key(mark.worker_id)
        run_script(pipe, _FLUSH, [keys.METRICS, marks], MARKS_TTL_S, mark.lane, mark.number, *pairs)


def forget_workers(r: Any, worker_ids: set[str]) -> int:
    """Delete every series of these workers (stopped ones: their totals stay in Prometheus's history, and a
    crash-looping worker, a new id each start, must not grow the hash without end). Returns the fields
    deleted."""
    doomed = [
        raw for raw, _ in r.hscan_iter(keys.METRICS) if dict(json.loads(raw)[1]).get("worker") in worker_ids
    ]
    return int(r.hdel(keys.METRICS, *doomed)) if doomed else 0


def count_requeue(r: Any, model: str, worker_id: str, reason: str) -> None:
    """Count a request put back on its queue (worker_lost, handed_back, redispatched); one whose worker
    died (worker_lost) also counts as handed over."""
    labels = {"model_name": model, "worker": worker_id}
    tally = Tally()
    tally.count(REQUEUED, {**labels, "reason": reason})
    if reason == "worker_lost":
        tally.count(HANDED_OVER, labels)
    tally.flush(r)


def count_ended_unrun(r: Any, model: str, worker_id: str, reason: str) -> None:
    """Count a request that ended without a worker ending it: cancelled while queued (by the API), or
    failed by the reaper after MAX_ATTEMPTS (its worker_id the last that lost it). Tokens: none new."""
    tally = Tally()
    tally.count(SUCCESS, {"model_name": model, "worker": worker_id, "finished_reason": reason})
    tally.flush(r)


@dataclass
class Series:
    """One labelled series read back: a counter's total, or a histogram's buckets (cumulative) and sum."""

    family: Family
    labels: dict[str, str]
    total: float = 0.0
    buckets: dict[float, float] | None = None
    sum: float = 0.0


def read(r: Any) -> list[Series]:
    """Every series in Redis, grouped by family and labels; histogram buckets made cumulative."""
    found: dict[tuple[str, str], Series] = {}
    for raw_field, raw_value in r.hgetall(keys.METRICS).items():
        name, pairs, part = json.loads(raw_field)
        family = _BY_NAME.get(name)
        if family is None:  # written by a newer version: skip rather than guess its type
            continue
        labels = {k: v for k, v in pairs}
        series = found.setdefault((name, json.dumps(pairs)), Series(family, labels))
        value = float(raw_value)
        if part == "total":
            series.total = value
        elif part == "sum":
            series.sum = value
        else:
            series.buckets = series.buckets or {}
            series.buckets[math.inf if part == "+Inf" else float(part)] = value
    for series in found.values():
        if series.family.kind == "histogram":
            _make_cumulative(series)
    return list(found.values())


def _make_cumulative(series: Series) -> None:
    seen = series.buckets or {}
    running, cumulative = 0.0, {}
    for bound in [*series.family.buckets, math.inf]:
        running += seen.get(bound, 0.0)
        cumulative[bound] = running
    series.buckets = cumulative
