"""`echo` on /v1/completions: the prompt's own token logprobs, as lm-evaluation-harness's loglikelihood
reads them, checked against a direct forward pass of the same model (fp32)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import requests
import torch

from devtools.clients import iter_sse, submit_as
from tests.e2e.conftest import KeyedCluster, auth

MODEL = "torchweave-tiny"


@pytest.fixture(scope="module")
def client(live_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0, timeout=60)


def direct_logprobs(reference: Any, ids: list[int]) -> list[float]:
    """log p(ids[i] | ids[:i]) for i >= 1, from one forward pass of the reference model."""
    _, model = reference
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[i - 1, ids[i]].item() for i in range(1, len(ids))]


def test_echo_logprobs_equal_a_direct_forward_pass(client: openai.OpenAI, reference: Any) -> None:
    tokenizer, _ = reference
    text = "The quick brown fox jumps over the lazy dog, twice: é ü."
    ids = tokenizer.encode(text)
    for prompt in (text, ids):
        resp = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
        lp = resp.choices[0].logprobs
        assert lp is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
        assert (
            len(lp.token_logprobs) == len(ids) and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        )
        got = torch.tensor(lp.token_logprobs[1:])
        assert torch.allclose(got, torch.tensor(direct_logprobs(reference, ids)), atol=1e-4), got
        assert all(len(top) >= 1 for top in lp.top_logprobs[1:])
        assert (
            resp.usage is not None
            and resp.usage.prompt_tokens == len(ids)
            and resp.usage.completion_tokens == 0
        )
    assert lp is not None and resp.choices[0].text == "".join(
        lp.tokens or []
    )  # token ids echo as their tokens' text


def test_echo_with_a_token_continues_after_the_prompt(client: openai.OpenAI, reference: Any) -> None:
    # lm-eval's request: echo, logprobs 1, max_tokens 1; it reads token_logprobs[ctxlen:-1]
    tokenizer, _ = reference
    ids = tokenizer.encode("Context and continuation")
    resp = client.completions.create(
        model=MODEL, prompt=ids, max_tokens=1, echo=True, logprobs=1, temperature=0
    )
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.token_logprobs is not None and len(lp.token_logprobs) == len(ids) + 1
    assert torch.allclose(
        torch.tensor(lp.token_logprobs[1:-1]), torch.tensor(direct_logprobs(reference, ids)), atol=1e-4
    )
    text = client.completions.create(model=MODEL, prompt="Echo me", max_tokens=3, echo=True, temperature=0)
    plain = client.completions.create(model=MODEL, prompt="Echo me", max_tokens=3, temperature=0)
    assert text.choices[0].text == "Echo me" + plain.choices[0].text and text.choices[0].logprobs is None


def test_streamed_echo_starts_with_the_prompt(live_url: str) -> None:
    body = {
        "model": MODEL,
        "prompt": "Streamed",
        "max_tokens": 2,
        "echo": True,
        "logprobs": 0,
        "stream": True,
    }
    with requests.post(f"{live_url}/v1/completions", json=body, stream=True, timeout=60) as resp:
        lines = [line[6:] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    chunks = [json.loads(line) for line in lines if line != "[DONE]"]
    first = chunks[0]["choices"][0]
    assert first["text"].startswith("Streamed") and first["logprobs"]["token_logprobs"][0] is None
    assert len(first["logprobs"]["tokens"]) >= 9  # BOS and 8 bytes, then the first new token


def test_four_echo_requests_of_no_tokens_beside_another_keys_stream(keyed: KeyedCluster) -> None:
    # lm-eval's loglikelihood shape, four at once, while another key decodes on the same worker: a prompt
    # done with no token to make once broke the step of everyone in the batch.
    victim, evaluator = keyed.key("echo-victim"), keyed.key("echo-lm-eval")
    sub = submit_as(keyed.url, auth(victim), prompt="victim", max_new_tokens=1500, temperature=0,
                    ignore_eos=True)  # fmt: skip
    body = {"model": MODEL, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}

    def echo(i: int) -> requests.Response:
        prompt = f"Question {i}: is the answer {'yes' * (i + 1)}?"
        return requests.post(f"{keyed.urls[i % 2]}/v1/completions", json={**body, "prompt": prompt},
                             headers=auth(evaluator), timeout=120)  # fmt: skip

    with requests.get(sub["stream_url"], stream=True, headers=auth(victim), timeout=120) as resp:
        events = iter_sse(resp.iter_lines(delimiter=b"\n"))
        seen = [next(e for e in events if e.event == "token")]  # the victim is decoding
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(echo, range(4)))
        state = requests.get(f"{keyed.url}/v1/requests/{sub['id']}", headers=auth(victim), timeout=10).json()
        seen += list(events)
    assert state["status"] == "running"  # the echoes ran while it decoded: they shared its steps
    for answer in answers:
        assert answer.status_code == 200, answer.text
        lp = answer.json()["choices"][0]["logprobs"]
        assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) > 10
        assert all(isinstance(x, float) for x in lp["token_logprobs"][1:])
    assert [e.event for e in seen if e.event in ("error", "done")] == ["done"]
    assert seen[-1].data["finish_reason"] == "length" and seen[-1].data["usage"]["completion_tokens"] == 1500
    indexes = [int(e.id) for e in seen if e.id is not None]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
