"""The OpenAI-compatible API, checked with the official openai client."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
import requests
from openapi_spec_validator import validate

from shared import bus, keys

MODEL = "torchweave-tiny"


@pytest.fixture(scope="module")
def client(live_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_completion(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, temperature=0)
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    assert len(resp.choices) == 1 and resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.prompt_tokens == 6  # BOS + 5 bytes
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_streamed_completion_equals_the_whole_one(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="Stream me", max_tokens=20, temperature=0)
    chunks = list(
        client.completions.create(model=MODEL, prompt="Stream me", max_tokens=20, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_chat_completion_and_stream(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=15, temperature=0)
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=15, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    # The chat template wraps the messages: more prompt tokens than the text alone.
    assert whole.usage is not None and whole.usage.prompt_tokens > len("Be brief.Hi")


def test_n_choices_are_separate_sequences(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model=MODEL, prompt="Two ways", max_tokens=16, temperature=1.0, n=2, seed=5
    )
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].text != resp.choices[1].text
    again = client.completions.create(
        model=MODEL, prompt="Two ways", max_tokens=16, temperature=1.0, n=2, seed=5
    )
    assert [c.text for c in again.choices] == [c.text for c in resp.choices]
    stream = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=8, n=2, seed=1, stream=True
        )
    )
    assert {c.choices[0].index for c in stream if c.choices} == {0, 1}


def test_stop_and_seed(client: openai.OpenAI) -> None:
    full = (
        client.completions.create(model=MODEL, prompt="Stops", max_tokens=30, temperature=0).choices[0].text
    )
    stop = full[8:10]
    cut = client.completions.create(model=MODEL, prompt="Stops", max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    a = client.completions.create(model=MODEL, prompt="Seed", max_tokens=20, temperature=1, seed=42)
    b = client.completions.create(model=MODEL, prompt="Seed", max_tokens=20, temperature=1, seed=42)
    assert a.choices[0].text == b.choices[0].text


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "u"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6 or chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


def test_logprobs(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model=MODEL, prompt="Probs", max_tokens=5, temperature=0, logprobs=3, extra_body={"ignore_eos": True}
    )
    lp = resp.choices[0].logprobs
    assert lp is not None and len(lp.tokens or []) == 5 and len(lp.token_logprobs or []) == 5
    for chosen, top in zip(lp.token_logprobs or [], lp.top_logprobs or [], strict=True):
        assert len(top) == 3 and chosen <= 0 and abs(chosen - max(top.values())) < 1e-5  # greedy: the best
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "p"}],
        max_tokens=4,
        logprobs=True,
        top_logprobs=2,
        extra_body={"ignore_eos": True},
    )
    content = chat.choices[0].logprobs.content if chat.choices[0].logprobs else None
    assert content is not None and len(content) == 4 and all(len(t.top_logprobs) == 2 for t in content)


def test_vllm_sampling_extras_are_accepted(client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model=MODEL,
        prompt="Extras",
        max_tokens=8,
        extra_body={
            "top_k": 20,
            "min_p": 0.05,
            "repetition_penalty": 1.2,
            "min_tokens": 8,
            "ignore_eos": False,
        },
    )
    assert resp.usage is not None and resp.usage.completion_tokens == 8  # min_tokens held EOS off


def test_errors_are_the_sdk_exception_types(client: openai.OpenAI, redis_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4, frequency_penalty=2.5)
    assert "frequency_penalty" in str(bad.value)
    with pytest.raises(openai.BadRequestError, match="max_tokens: 0 only with echo"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=0)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x")
    r = bus.connect(redis_url)
    # Scored now: queue positions drop entries older than STREAM_TTL, as they do for expired requests.
    fillers = {f"filler-{i}": time.time() for i in range(256)}
    r.zadd(keys.waiting_key(MODEL), fillers)
    try:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    finally:
        r.zrem(keys.waiting_key(MODEL), *fillers)


def test_streamed_request_is_resumable_by_its_request_id(live_url: str) -> None:
    body = {"model": MODEL, "prompt": "Resumable", "max_tokens": 10, "temperature": 0, "stream": True}
    with requests.post(f"{live_url}/v1/completions", json=body, stream=True, timeout=30) as resp:
        rid = resp.headers["X-Request-Id"]
        lines = [line for line in resp.iter_lines() if line.startswith(b"data: {")]
    text = "".join(
        json.loads(line[6:])["choices"][0]["text"] for line in lines if json.loads(line[6:])["choices"]
    )
    status = requests.get(f"{live_url}/v1/requests/{rid}", timeout=5).json()
    assert status["text"] == text and status["status"] == "finished"


def test_openapi_document_and_docs(live_url: str) -> None:
    doc = requests.get(f"{live_url}/openapi.json", timeout=5).json()
    validate(doc)  # raises on any departure from the OpenAPI 3.1 specification
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/requests", "/v1/completions", "/v1/chat/completions"):
        assert path in doc["paths"]
    assert "ChatCompletionRequest" in doc["components"]["schemas"]
    page = requests.get(f"{live_url}/docs/", timeout=5)
    assert page.status_code == 200 and "/docs/swagger-ui-bundle.js" in page.text
    assert requests.get(f"{live_url}/docs/swagger-ui-bundle.js", timeout=5).status_code == 200
