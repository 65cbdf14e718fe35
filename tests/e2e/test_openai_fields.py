"""OpenAI's fields as real clients send them: nulls, neutral fields, "X is not supported", token-id
prompts, agent-style chat messages, penalties and logit bias, usage on every chunk."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests

MODEL = "torchweave-tiny"
A = 35  # the built-in tokenizer's id for "A" (3 special tokens, then the byte-level alphabet)


@pytest.fixture(scope="module")
def client(live_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0, timeout=60)


def post(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}{path}", json={"model": MODEL, **body}, timeout=60)


def error_of(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    error: dict[str, Any] = resp.json()["error"]
    return error


def test_null_means_the_default(live_url: str) -> None:
    nulls = {
        k: None for k in ("max_tokens", "seed", "logprobs", "stop", "n", "stream", "temperature", "user")
    }
    resp = post(live_url, "/v1/completions", {"prompt": "Nulls", **nulls, "stream_options": None})
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] <= 16  # max_tokens' default
    chat = post(live_url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], **nulls})
    assert chat.status_code == 200, chat.text


def test_neutral_fields_are_accepted(live_url: str) -> None:
    neutral = {
        "metadata": {"team": "a"},
        "store": False,
        "service_tier": "auto",
        "parallel_tool_calls": True,
        "logit_bias": {},
        "user": "u-1",
        "frequency_penalty": 0,
        "presence_penalty": 0,
    }
    resp = post(
        live_url, "/v1/completions", {"prompt": "Calm", "max_tokens": 2, "best_of": 2, "n": 2, **neutral}
    )
    assert resp.status_code == 200, resp.text
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    chat = post(
        live_url,
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 2,
            "tools": tools,
            "tool_choice": "none",
        },
    )
    assert chat.status_code == 200, chat.text


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix is not supported"),
        ("/v1/completions", {"prompt": "x", "store": True}, "store True is not supported"),
        ("/v1/completions", {"prompt": "x", "service_tier": "flex"}, "service_tier 'flex' is not supported"),
        ("/v1/completions", {"prompt": "x", "best_of": 3}, "best_of 3 is not supported"),
        (
            "/v1/completions",
            {"prompt": "x", "stream": True, "stream_options": {"x": 1}},
            "stream_options.x is not",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
            "tool_choice is not supported without tools",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "audio": {}},
            "audio is not",
        ),
    ],
)
def test_what_is_not_implemented_says_so(
    live_url: str, path: str, body: dict[str, Any], message: str
) -> None:
    error = error_of(post(live_url, path, body))
    assert message in error["message"] and error["code"] == "not_supported"


def test_a_prompt_of_token_ids_is_the_same_as_its_text(client: openai.OpenAI, live_url: str) -> None:
    ids = requests.post(f"{live_url}/tokenize", json={"model": MODEL, "prompt": "Same"}, timeout=10).json()
    assert ids["count"] == 5 and ids["tokens"][0] == 1  # BOS, then one token per byte
    text = client.completions.create(model=MODEL, prompt="Same", max_tokens=10, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=ids["tokens"], max_tokens=10, temperature=0)
    assert by_ids.choices[0].text == text.choices[0].text
    assert by_ids.usage is not None and by_ids.usage.prompt_tokens == 5
    two = client.completions.create(model=MODEL, prompt=[ids["tokens"], [1, A]], max_tokens=3, temperature=0)
    short = client.completions.create(model=MODEL, prompt="Same", max_tokens=3, temperature=0)
    assert len(two.choices) == 2 and two.choices[0].text == short.choices[0].text


@pytest.mark.parametrize("prompt", [[1, "a"], [[]], [-1], [1.5], [[1], "a"], {"a": 1}, [], [True]])
def test_malformed_prompts_get_a_clear_message(live_url: str, prompt: Any) -> None:
    error = error_of(post(live_url, "/v1/completions", {"prompt": prompt}))
    assert error["param"] == "prompt" and "token ids" in error["message"], error


def test_a_token_id_past_the_vocabulary_is_400(live_url: str) -> None:
    error = error_of(post(live_url, "/v1/completions", {"prompt": [1, 259]}))
    assert "token id 259 is out of the vocabulary" in error["message"]


def test_tokenize_and_detokenize(live_url: str) -> None:
    out = requests.post(
        f"{live_url}/tokenize", json={"model": MODEL, "prompt": "hé", "return_token_strs": True}, timeout=10
    ).json()
    assert out["count"] == 4 and out["max_model_len"] == 2048 and len(out["token_strs"]) == 4
    back = requests.post(f"{live_url}/detokenize", json={"model": MODEL, "tokens": out["tokens"]}, timeout=10)
    assert back.json() == {"prompt": "<s>hé"}
    chat = requests.post(
        f"{live_url}/tokenize",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    ).json()
    usage = post(
        live_url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    )
    assert chat["count"] == usage.json()["usage"]["prompt_tokens"]
    missing = requests.post(f"{live_url}/tokenize", json={"model": MODEL}, timeout=10)
    assert missing.status_code == 400
    bad = requests.post(f"{live_url}/detokenize", json={"model": MODEL, "tokens": [10**6]}, timeout=10)
    assert "out of the vocabulary" in error_of(bad)["message"]


def test_agent_style_messages_are_accepted(client: openai.OpenAI, live_url: str) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    messages: list[Any] = [
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather?"}, {"type": "text", "text": " Oslo"}],
        },
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
    ]
    resp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert resp.choices[0].message.role == "assistant"
    rendered = requests.post(f"{live_url}/detokenize", json={"model": MODEL, "tokens": requests.post(
        f"{live_url}/tokenize", json={"model": MODEL, "messages": messages}, timeout=10).json()["tokens"]},
        timeout=10).json()["prompt"]  # fmt: skip
    assert "Use tools." in rendered and "Weather? Oslo" in rendered and "12 C" in rendered
    no_id = error_of(post(live_url, "/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}))
    assert "tool_call_id" in no_id["message"]
    no_content = error_of(post(live_url, "/v1/chat/completions", {"messages": [{"role": "user"}]}))
    assert "content is required" in no_content["message"]


def test_logit_bias_and_penalties_steer_greedy_decoding(client: openai.OpenAI) -> None:
    def greedy(**extra: Any) -> str:
        resp = client.completions.create(
            model=MODEL, prompt="Bias", max_tokens=60, temperature=0, extra_body={"ignore_eos": True}, **extra
        )
        return resp.choices[0].text

    assert greedy(logit_bias={str(A): 100}) == "A" * 60
    # Each "A" costs 2 more (frequency) after the first costs 2 (presence): the +100 runs out near 49.
    steered = greedy(logit_bias={str(A): 100}, frequency_penalty=2.0, presence_penalty=2.0)
    run = len(steered) - len(steered.lstrip("A"))
    assert 30 < run < 60 and steered[run] != "A", steered
    assert greedy(frequency_penalty=0.0, presence_penalty=0.0) == greedy()


def test_continuous_usage_stats_put_usage_on_every_chunk(client: openai.OpenAI) -> None:
    options: Any = {"include_usage": True, "continuous_usage_stats": True}  # the latter is vLLM's
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Count",
            max_tokens=8,
            stream=True,
            stream_options=options,
            extra_body={"ignore_eos": True},
        )
    )
    assert all(c.usage is not None and c.usage.prompt_tokens == 6 for c in chunks)
    completion = [c.usage.completion_tokens for c in chunks if c.usage is not None]
    assert completion == sorted(completion) and completion[-1] == 8
    assert chunks[-1].choices == []
