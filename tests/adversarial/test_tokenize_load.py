"""Tokenizing long inputs never stalls other keys' streams: the work runs off the API's event loop, and
input past MAX_PROMPT_CHARS (200,000 by default) is refused before any tokenizing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.adversarial.conftest import Cluster, start_victims

MODEL = "torchweave-tiny"
LONG = "lorem ipsum dolor sit amet " * 7_400  # 199,800 characters: just under MAX_PROMPT_CHARS


def tokenize(adv: Cluster, prompt: str) -> requests.Response:
    return requests.post(f"{adv.url}/tokenize", json={"model": MODEL, "prompt": prompt}, timeout=120)


def complete(adv: Cluster, prompt: str) -> requests.Response:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 4}
    return requests.post(f"{adv.url}/v1/completions", json=body, timeout=120)


def test_inputs_past_max_prompt_chars_are_a_413_naming_the_limit(adv: Cluster) -> None:
    huge = "x" * 1_000_000  # about the 1 MiB body cap
    for resp, param in ((tokenize(adv, huge), "prompt"), (complete(adv, huge), "prompt")):
        assert resp.status_code == 413, resp.text
        error = resp.json()["error"]
        assert error["param"] == param and error["code"] == "prompt_too_long"
        assert "MAX_PROMPT_CHARS" in error["message"] and "200000" in error["message"]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": huge}], "max_tokens": 4}
    resp = requests.post(f"{adv.url}/v1/chat/completions", json=chat, timeout=60)
    assert resp.status_code == 413 and resp.json()["error"]["param"] == "messages", resp.text


def test_long_tokenizing_leaves_other_streams_flowing(adv: Cluster) -> None:
    victims, threads = start_victims(adv.url, 8, max_new_tokens=600)
    started = time.monotonic()

    def attack(i: int) -> int:
        # /tokenize answers; /v1/completions tokenizes, then refuses the prompt as over the context
        resp = tokenize(adv, LONG) if i % 2 == 0 else complete(adv, LONG)
        return resp.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(attack, range(12)))
    ended = time.monotonic()
    for t in threads:
        t.join(180)
    gaps = [v.largest_gap(started, ended) for v in victims]
    print(f"victims' largest token gap during 12 tokenizations of 199,800 characters: "
          f"{max(gaps) * 1000:.0f} ms over {ended - started:.1f} s")  # fmt: skip
    assert statuses == [200, 400] * 6
    assert max(gaps) < 2.0
    for v in victims:
        assert v.last == "done" and v.indexes == list(range(len(v.indexes)))
