"""Rate limits shared by two API processes on one Redis, and fair share inside the batch."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devtools.clients import read_sse, submit_as
from devtools.servers import wait_for
from shared.ratelimit import WINDOW_S
from tests.e2e.conftest import ADMIN_KEY, KeyedCluster, auth
from tests.e2e.test_streams import read_first


def a_fresh_minute(seconds_needed: float = 20.0) -> None:
    """Start once the current rate-limit minute has at least seconds_needed left, so one test's requests
    all count in one window."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < seconds_needed:
        time.sleep(left + 0.1)


def post(url: str, secret: str, **body: Any) -> requests.Response:
    return requests.post(f"{url}/v1/requests", json=body, headers=auth(secret), timeout=30)


def test_requests_per_minute_hold_across_two_api_processes(keyed: KeyedCluster) -> None:
    secret = keyed.key("rpm-10", rpm=10)
    a_fresh_minute()
    with ThreadPoolExecutor(8) as pool:  # both processes at once, as a client's retries would land
        answers = list(
            pool.map(lambda i: post(keyed.urls[i % 2], secret, prompt="x", max_new_tokens=1), range(30))
        )
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    print(f"rate limit across two API processes: {len(accepted)} of 30 accepted with rpm 10")
    assert len(accepted) == 10 and len(refused) == 20
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in accepted) == list(range(10))
    for a in refused:
        assert int(a.headers["Retry-After"]) >= 1 and a.headers["x-ratelimit-remaining-requests"] == "0"
        assert a.json()["error"]["code"] == "rate_limit_exceeded"
        assert a.headers["x-ratelimit-limit-requests"] == "10"


def test_requests_per_minute_count_generations_and_tokenizing(keyed: KeyedCluster) -> None:
    secret = keyed.key("rpm-6", rpm=6)
    a_fresh_minute()

    def completions(**body: Any) -> requests.Response:
        body = {"model": "torchweave-tiny", "max_tokens": 1, **body}
        return requests.post(f"{keyed.url}/v1/completions", json=body, headers=auth(secret), timeout=60)

    too_many = completions(prompt=["a", "b", "c", "d"], n=2)  # 8 generations: more than a minute's 6
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "exceeds_request_limit"
    four = completions(prompt=["a", "b"], n=2)
    assert four.status_code == 200 and four.headers["x-ratelimit-remaining-requests"] == "2", four.text
    tokenized = requests.post(
        f"{keyed.urls[1]}/tokenize", json={"prompt": "hello"}, headers=auth(secret), timeout=10
    )
    assert tokenized.status_code == 200
    over_context = completions(prompt="word " * 3000)  # tokenized, then refused: the work still counts
    assert (
        over_context.status_code == 400 and over_context.json()["error"]["code"] == "context_length_exceeded"
    )
    refused = post(keyed.urls[1], secret, prompt="x", max_new_tokens=1)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    print("rpm 6: 4 generations, 1 /tokenize and 1 refused prompt counted 6, then 429")


def test_tokens_are_reserved_then_given_back_when_unused(keyed: KeyedCluster) -> None:
    secret = keyed.key("tpm-3000", tpm=3000)
    a_fresh_minute(30)
    first = post(keyed.url, secret, prompt="x", max_new_tokens=1900, temperature=0, ignore_eos=True)
    assert first.status_code == 202
    too_much = post(keyed.urls[1], secret, prompt="x", max_new_tokens=2040)
    assert too_much.status_code == 429 and "tokens" in too_much.json()["error"]["message"]
    sub = first.json()
    read_first(sub["stream_url"], 3, headers=auth(secret))  # it runs: stop it after a few tokens
    requests.delete(f"{keyed.url}/v1/requests/{sub['id']}", headers=auth(secret), timeout=10)
    done = read_sse(sub["stream_url"], headers=auth(secret), timeout=60)[-1]
    used, prompt = done.data["usage"]["total_tokens"], done.data["usage"]["prompt_tokens"]
    assert done.data["finish_reason"] == "cancelled" and used < prompt + 1900
    again = post(keyed.urls[1], secret, prompt="x", max_new_tokens=10)
    assert again.status_code == 202
    # Only what the first used still counts, besides this one's own reservation.
    assert int(again.headers["x-ratelimit-remaining-tokens"]) == 3000 - used - (prompt + 10)


def test_one_request_above_the_whole_token_limit_is_a_400(keyed: KeyedCluster) -> None:
    secret = keyed.key("tpm-100", tpm=100)
    big = post(keyed.url, secret, prompt="x", max_new_tokens=200)
    assert big.status_code == 400 and big.json()["error"]["code"] == "exceeds_token_limit"


def ttft(url: str, secret: str) -> float:
    """Seconds from submission to the first token of a short request, as the server timed it."""
    sub = submit_as(url, auth(secret), prompt="light", max_new_tokens=8, temperature=0)
    read_sse(sub["stream_url"], headers=auth(secret), timeout=120)
    status = requests.get(f"{url}/v1/requests/{sub['id']}", headers=auth(secret), timeout=10).json()
    return float(status["timings"]["ttft_s"])


def test_a_light_key_is_served_within_three_times_its_idle_ttft_under_a_flood(keyed: KeyedCluster) -> None:
    heavy, light = keyed.key("heavy"), keyed.key("light")
    idle = statistics.median(ttft(keyed.url, light) for _ in range(5))
    body = {"max_new_tokens": 256, "temperature": 0, "ignore_eos": True}
    with requests.Session() as client:  # one connection, as a busy client keeps one
        flood = [
            client.post(f"{keyed.url}/v1/requests", json={"prompt": f"{i}", **body}, headers=auth(heavy))
            for i in range(100)
        ]
    assert [f.status_code for f in flood] == [202] * 100
    ids = [f.json()["id"] for f in flood]
    try:

        def slots_free() -> int:
            workers = requests.get(f"{keyed.url}/v1/workers", headers=auth(ADMIN_KEY), timeout=10).json()
            return sum(w["slots_free"] for w in workers["workers"])

        wait_for(lambda: slots_free() == 0, 60, "the flood filling every slot")
        crowded = statistics.median(ttft(keyed.urls[1], light) for _ in range(3))
        print(f"fair share: light key's TTFT p50 {crowded * 1000:.0f} ms under a 100-request flood, "
              f"{idle * 1000:.0f} ms idle ({crowded / idle:.1f}x)")  # fmt: skip
        assert crowded <= 3 * idle
    finally:
        for rid in ids:
            requests.delete(f"{keyed.url}/v1/requests/{rid}", headers=auth(ADMIN_KEY), timeout=10)
