"""A JSON schema that compiles but would cost the worker seconds and memory at its first tokens is a 400
naming its field, checked in the API under the worker's own grammar limits: other streams never stall."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.adversarial.conftest import Cluster, rss_kib, start_victims

MODEL = "torchweave-tiny"
BOMB: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "string", "pattern": "^(a{10000}){10000}$"}},
    "required": ["a"],
}
FINE: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "tag": {"type": "string", "pattern": "^[a-z]{1,8}$"}},
    "required": ["id", "tag"],
}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "json"}], "max_tokens": 24}


def attempt(adv: Cluster, kind: int, schema: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One request holding the schema: as a response_format, a named tool's parameters, or json_schema."""
    if kind == 0:
        spec = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        resp = requests.post(f"{adv.url}/v1/chat/completions", json={**CHAT, "response_format": spec},
                             timeout=120)  # fmt: skip
    elif kind == 1:
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        choice = {"type": "function", "function": {"name": "f"}}
        body = {**CHAT, "tools": [tool], "tool_choice": choice}
        resp = requests.post(f"{adv.url}/v1/chat/completions", json=body, timeout=120)
    else:
        body = {"prompt": "json", "max_new_tokens": 24, "json_schema": schema}
        resp = requests.post(f"{adv.url}/v1/requests", json=body, timeout=120)
    return resp.status_code, resp.json()


def test_a_schema_bomb_is_a_400_and_other_streams_keep_flowing(adv: Cluster) -> None:
    victims, threads = start_victims(adv.url, 8, max_new_tokens=400)
    worker_before = rss_kib(adv.worker.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: attempt(adv, i % 3, BOMB), range(12)))
    ended = time.monotonic()
    for t in threads:
        t.join(180)
    gaps = [v.largest_gap(started, ended) for v in victims]
    growth_mib = (rss_kib(adv.worker.pid) - worker_before) / 1024
    print(f"victims' largest token gap during 12 schema bombs: {max(gaps) * 1000:.0f} ms over "
          f"{ended - started:.1f} s; worker memory {growth_mib:+.0f} MiB")  # fmt: skip
    params = ["response_format.json_schema", "tools", "json_schema"]
    for i, (status, body) in enumerate(answers):
        assert status == 400, body
        error = body["error"]
        assert error["param"] == params[i % 3] and error["code"] == "invalid_schema"
        assert "GRAMMAR_LEXER_FUEL" in error["message"]
    assert max(gaps) < 2.0
    assert growth_mib < 100
    for v in victims:
        assert v.last == "done" and v.indexes == list(range(len(v.indexes)))


def test_an_ordinary_schema_still_passes_the_check(adv: Cluster) -> None:
    for kind in range(3):
        status, body = attempt(adv, kind, FINE)
        assert status in (200, 202), body
