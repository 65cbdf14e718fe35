"""Bad input gets a 4xx whose JSON error names the problem; nothing is enqueued, nothing 500s."""

from __future__ import annotations

from typing import Any

import pytest
import requests

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
    assert_error(post(api_url, json={"prompt": "x" * (2 * 1024 * 1024)}), 413)


def test_unknown_request_is_404(api_url: str) -> None:
    for path in ("", "/stream"):
        assert_error(requests.get(f"{api_url}/v1/requests/nope{path}", timeout=5), 404)


def test_unknown_route_is_json_404(api_url: str) -> None:
    assert_error(requests.get(f"{api_url}/v2/nothing", timeout=5), 404)


def test_wrong_method_is_405(api_url: str) -> None:
    assert_error(requests.get(f"{api_url}/v1/generate", timeout=5), 405)
