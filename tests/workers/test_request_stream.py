"""A running request's writes on a real Redis: generated tokens are counted as their events are written."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared import bus, metrics
from shared.messages import FinishReason, GenerationRequest, SamplingParams, Usage
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


def step(r: redis.Redis, active: ActiveRequest, token_ids: list[int]) -> None:
    """One step's writes for the request: its new tokens, then one round trip."""
    writes = StreamWrites("w1", ttl_s=60)
    for token_id in token_ids:
        writes.token(active, time.time())
        active.pending_ids.append(token_id)
        writes.text(active, active.output.push(token_id))
    writes.apply(r, lambda: False)


def test_tokens_count_with_the_events_that_carry_them_and_a_resumed_request_counts_once(
    r: redis.Redis, tiny: LoadedModel
) -> None:
    model = f"m-{uuid.uuid4().hex}"
    request = GenerationRequest(request_id=uuid.uuid4().hex, model=model, prompt="p",
                                params=SamplingParams(), created_at=time.time())  # fmt: skip
    hello = tiny.tokenizer("hello", add_special_tokens=False)["input_ids"]
    first = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer))
    step(r, first, hello[:3])
    assert generated(r, model) == 3  # while the request runs, not at its end
    # Its worker died; the next resumes from the 3 streamed tokens and makes the other 2, the last
    # of which no event carries (as EOS would not): counted at the end, and nothing counted twice.
    resumed = ActiveRequest(request, prompt_ids=[1], output=TextOutput(tiny.tokenizer), prior_ids=hello[:3])
    step(r, resumed, hello[3:4])
    writes = StreamWrites("w2", ttl_s=60)
    writes.end(resumed, FinishReason.LENGTH, Usage.of(1, 5), time.time())
    writes.apply(r, lambda: False)
    assert generated(r, model) == 5
