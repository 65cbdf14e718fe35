"""A running request's writes on a real Redis: generated tokens are counted as their events are written,
and a worker that lost its claim writes nothing at all."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared import admission, bus, keys, lifecycle, metrics, ratelimit, timeline
from shared.messages import ApiKey, FinishReason, GenerationRequest, RateCharge, SamplingParams, Usage
from workers.model_loader import LoadedModel
from workers.request_stream import ActiveRequest, StreamWrites
from workers.text_output import TextOutput


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return bus.connect(redis_url.rsplit("/", 1)[0] + "/15")  # a database of its own


def generated(r: redis.Redis, model: str) -> float:
    return sum(
        s.total
        for s in metrics.read(r)
        if s.family is metrics.GENERATION_TOKENS and s.labels["model_name"] == model
    )


def step(r: redis.Redis, active: ActiveRequest, token_ids: list[int], worker: str = "w1") -> set[str]:
    """One step's writes for the request: its new tokens, then one round trip. Returns the ids lost."""
    writes = StreamWrites(worker, ttl_s=60)
    for token_id in token_ids:
        writes.token(active, time.time())
        active.pending_ids.append(token_id)
        writes.text(active, active.output.push(token_id))
    writes.apply(r, lambda: False)
    return writes.lost


def stored(r: redis.Redis, charge: RateCharge | None = None) -> GenerationRequest:
    """A request admitted to the queue, as the API stores it."""
    request = GenerationRequest(request_id=uuid.uuid4().hex, model=f"m-{uuid.uuid4().hex}", prompt="p",
                                params=SamplingParams(), created_at=time.time(), charge=charge)  # fmt: skip
    admission.admit(r, [request], ttl_s=60)
    return request


def written(r: redis.Redis, request: GenerationRequest, tokens_key: str) -> tuple[object, ...]:
    """What workers wrote for a request: its events, record, timeline, counted tokens, its key's tokens."""
    rid = request.request_id
    return (bus.read_events(r, rid), r.hgetall(keys.request_key(rid)), timeline.read(r, rid),
            generated(r, request.model), r.get(tokens_key))  # fmt: skip


def take_over(r: redis.Redis, request: GenerationRequest, worker: str) -> int:
    """The lease of whoever holds the request runs out; the reaper requeues it and `worker` claims it."""
    r.zadd(keys.LEASES, {request.request_id: time.time() - 60}, xx=True)
    assert lifecycle.requeue(r, request, holder=None, max_attempts=5, ttl_s=60) == "requeued"
    return lifecycle.claim(r, request, worker, lease_s=60)


def test_tokens_count_with_the_events_that_carry_them_and_a_resumed_request_counts_once(
    r: redis.Redis, tiny: LoadedModel
) -> None:
    request = stored(r)
    model = request.model
    hello = tiny.tokenizer("hello", add_special_tokens=False)["input_ids"]
    first = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer))
    first.epoch = lifecycle.claim(r, request, "w1", lease_s=60)
    step(r, first, hello[:3])
    assert generated(r, model) == 3  # while the request runs, not at its end
    # Its worker died; the next resumes from the 3 streamed tokens and makes the other 2, the last
    # of which no event carries (as EOS would not): counted at the end, and nothing counted twice.
    resumed = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer), prior_ids=hello[:3])
    resumed.epoch = take_over(r, request, "w2")
    step(r, resumed, hello[3:4], worker="w2")
    writes = StreamWrites("w2", ttl_s=60)
    writes.end(resumed, FinishReason.LENGTH, Usage.of(1, 5), time.time())
    writes.apply(r, lambda: False)
    assert generated(r, model) == 5


def test_a_worker_that_lost_its_claim_writes_nothing_and_is_told(r: redis.Redis, tiny: LoadedModel) -> None:
    key = ApiKey(key_id=uuid.uuid4().hex, name="k", role="user", created_at=0.0, tpm=1000)
    window = ratelimit.reserve(r, key, requests=1, tokens=100).window
    tokens_key = keys.rate_key(key.key_id, "tok", window)
    request = stored(r, RateCharge(key_id=key.key_id, window=window, tokens=100))
    hello = tiny.tokenizer("hello", add_special_tokens=False)["input_ids"]
    zombie = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer))
    zombie.epoch = lifecycle.claim(r, request, "w1", lease_s=60)
    assert step(r, zombie, hello[:2]) == set()
    # w1 pauses past its lease; w2 takes the request over and finishes it.
    heir = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer), prior_ids=hello[:2])
    heir.epoch = take_over(r, request, "w2")
    assert heir.epoch == zombie.epoch + 1
    heir.next_index = zombie.next_index
    assert step(r, heir, hello[2:], worker="w2") == set()
    writes = StreamWrites("w2", ttl_s=60)
    writes.end(heir, FinishReason.LENGTH, Usage.of(1, len(hello)), time.time())
    writes.apply(r, lambda: False)
    before = written(r, request, tokens_key)
    # w1 wakes up: its next tokens and its own end are all refused, and it learns it lost the request.
    assert step(r, zombie, hello[2:3]) == {request.request_id}
    writes = StreamWrites("w1", ttl_s=60)
    writes.end(zombie, FinishReason.TIMEOUT, Usage.of(1, 3), time.time())
    writes.apply(r, lambda: False)
    assert writes.lost == {request.request_id}
    after = written(r, request, tokens_key)
    assert after == before
    assert int(r.get(tokens_key) or 0) == 1 + len(hello)  # refunded once, by w2: 100 - (1 + 5) back
    pipe = r.pipeline()
    lifecycle.check_running(pipe, [request.request_id], [zombie.epoch])
    assert pipe.execute()[-1] == ["lost"]
