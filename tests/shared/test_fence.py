"""Fenced writes on a real Redis: they run only while the claim is current, and a round trip applied again
after a lost reply adds nothing twice."""

from __future__ import annotations

import time
import uuid

import redis

from shared import admission, bus, fence, keys, lifecycle, metrics, timeline
from shared.messages import GenerationRequest, SamplingParams


def claimed(r: redis.Redis) -> tuple[GenerationRequest, int]:
    req = GenerationRequest(request_id=uuid.uuid4().hex, model=f"m-{uuid.uuid4().hex}", prompt="p",
                            params=SamplingParams(), created_at=time.time())  # fmt: skip
    admission.admit(r, [req], ttl_s=60)
    return req, lifecycle.claim(r, req, "w", lease_s=60)


def one_round_trip(
    r: redis.Redis, req: GenerationRequest, epoch: int, mark: metrics.FlushMark, counter: str
) -> list[int]:
    writes = fence.RequestWrites(req.request_id, epoch)
    writes.add(timeline.append, req.request_id, "step", time.time())
    writes.tally.count(metrics.SUCCESS, {"model_name": req.model, "worker": "w", "finished_reason": "stop"})
    writes.refunds.append((counter, 3))
    pipe = r.pipeline(transaction=False)
    fence.apply(pipe, [writes], mark)
    held: list[int] = pipe.execute()[0]
    return held


def successes(r: redis.Redis, model: str) -> float:
    return sum(
        s.total for s in metrics.read(r) if s.family is metrics.SUCCESS and s.labels["model_name"] == model
    )


def test_a_round_trip_applied_twice_writes_once(r: redis.Redis) -> None:
    req, epoch = claimed(r)
    counter = f"{keys.PREFIX}:test:{uuid.uuid4().hex}"
    r.set(counter, 10, ex=60)
    mark = metrics.next_mark("w")
    assert one_round_trip(r, req, epoch, mark, counter) == [1]
    assert one_round_trip(r, req, epoch, mark, counter) == [1]  # the retry after a lost reply
    assert [s["kind"] for s in timeline.read(r, req.request_id)] == ["step"]
    assert successes(r, req.model) == 1 and int(r.get(counter) or 0) == 7


def test_writes_with_a_stale_epoch_do_nothing_and_say_so(r: redis.Redis) -> None:
    req, epoch = claimed(r)
    counter = f"{keys.PREFIX}:test:{uuid.uuid4().hex}"
    r.set(counter, 10, ex=60)
    assert one_round_trip(r, req, epoch + 1, metrics.next_mark("w"), counter) == [0]
    assert timeline.read(r, req.request_id) == [] and successes(r, req.model) == 0
    assert int(r.get(counter) or 0) == 10
    assert bus.load_request(r, req.request_id) is not None
