"""Bad input gets a 4xx whose JSON error names the problem; nothing is enqueued, nothing 500s."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from shared import bus, keys

OK = {"prompt": "hi", "max_new_tokens": 4}


def post(url: str, path: str = "/v1/requests", **kwargs: Any) -> requests.Response:
    return requests.post(f"{url}{path}", timeout=10, **kwargs)


def assert_error(resp: requests.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
        assert param in error["message"]
    return error


@pytest.mark.parametrize("path", ["/v1/requests", "/v1/generate", "/v1/generate_nobatch"])
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_new_tokens": 4}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 123}, "prompt"),
        ({**OK, "max_new_tokens": "4"}, "max_new_tokens"),
        ({**OK, "max_new_tokens": 0}, "max_new_tokens"),
        ({**OK, "max_new_tokens": 10**9}, "max_new_tokens"),
        ({**OK, "max_new_tokens": True}, "max_new_tokens"),
        ({**OK, "temperature": -1}, "temperature"),
        ({**OK, "temperature": "hot"}, "temperature"),
        ({**OK, "top_p": 0}, "top_p"),
        ({**OK, "top_p": 1.5}, "top_p"),
        ({**OK, "top_k": -2}, "top_k"),
        ({**OK, "seed": -1}, "seed"),
        ({**OK, "seed": 1.5}, "seed"),
        ({**OK, "stop": [""]}, "stop.0"),
        ({**OK, "stop": 5}, "stop"),
        ({**OK, "unknown_field": 1}, "unknown_field"),
        ({**OK, "json_schema": {"type": "no-such-type"}}, "json_schema"),
        ({**OK, "logit_bias": {"a": 1}}, "logit_bias.a.[key]"),
        ({**OK, "frequency_penalty": 3}, "frequency_penalty"),
    ],
)
def test_invalid_fields_are_named(api_url: str, path: str, body: dict[str, Any], param: str) -> None:
    assert_error(post(api_url, path, json=body), 400, param)


def test_unknown_model_is_404_naming_the_field(api_url: str) -> None:
    assert_error(post(api_url, json={**OK, "model": "no/such-model"}), 404, "model")


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b"\xff\xfe{}",
        b'{"prompt": "x", "temperature": NaN}',
        b'{"prompt": "x", "temperature": Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_bodies_are_400(api_url: str, data: bytes) -> None:
    assert_error(post(api_url, data=data, headers={"Content-Type": "application/json"}), 400)


def test_oversized_body_is_413(api_url: str) -> None:
    assert_error(post(api_url, json={"prompt": "x" * (10 * 1024 * 1024)}), 413)


def test_unknown_request_is_404(api_url: str) -> None:
    for path in ("", "/stream"):
        assert_error(requests.get(f"{api_url}/v1/requests/nope{path}", timeout=5), 404)


def test_unknown_route_is_json_404(api_url: str) -> None:
    assert_error(requests.get(f"{api_url}/v2/nothing", timeout=5), 404)


def test_wrong_method_is_405(api_url: str) -> None:
    assert_error(requests.get(f"{api_url}/v1/generate", timeout=5), 405)


def test_prompt_longer_than_the_context_is_400_naming_the_limit(live_url: str) -> None:
    error = assert_error(post(live_url, json={"prompt": "x" * 3000, "max_new_tokens": 8}), 400, "prompt")
    assert "3001 tokens" in error["message"] and "2048" in error["message"]
    error = assert_error(post(live_url, json={"prompt": "x" * 2000, "max_new_tokens": 100}), 400, "prompt")
    assert "at most 1948 prompt tokens" in error["message"]
    assert_error(post(live_url, json={"prompt": "x", "max_new_tokens": 2048}), 400, "max_new_tokens")


def test_full_queue_is_429_with_retry_after(live_url: str, redis_url: str) -> None:
    r = bus.connect(redis_url)
    key = keys.waiting_key("torchweave-tiny")
    fillers = {f"filler-{i}": 0.0 for i in range(256)}  # MAX_QUEUED's default
    r.zadd(key, fillers)
    try:
        resp = post(live_url, json=OK)
        assert_error(resp, 429)
        assert resp.headers["Retry-After"] == "5"
    finally:
        r.zrem(key, *fillers)
    assert post(live_url, json=OK).status_code == 202


def test_workers_lists_each_live_worker(live_url: str) -> None:
    workers = requests.get(f"{live_url}/v1/workers", timeout=5).json()["workers"]
    assert len(workers) == 1
    w = workers[0]
    assert {"worker_id", "host", "pid", "model", "slots_used", "slots_free"} <= set(w)
    assert w["slots_used"] + w["slots_free"] == 8
