"""A submission of many generations is admitted whole or not at all, and capped; one owner cannot fill
the queue against another."""

from __future__ import annotations

import http.client
import json

import requests

from devtools.servers import wait_for
from shared import bus, keys
from tests.adversarial.conftest import Cluster

MODEL = "torchweave-tiny"


def stored_requests(adv: Cluster) -> int:
    r = bus.connect(adv.env["REDIS_URL"])
    return sum(1 for _ in r.scan_iter(match=keys.request_key("*"), count=1000))


def test_a_prompt_list_past_the_queue_is_refused_whole(adv: Cluster) -> None:
    r = bus.connect(adv.env["REDIS_URL"])
    wait_for(lambda: bus.num_waiting(r, MODEL) == 0, 60, "an empty queue")
    before = stored_requests(adv)
    body = {"model": MODEL, "prompt": [f"p{i}" for i in range(41)], "max_tokens": 2}  # MAX_QUEUED is 40
    resp = requests.post(f"{adv.url}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 429, resp.text
    assert "nothing was queued" in resp.json()["error"]["message"] and resp.headers["Retry-After"]
    assert bus.num_waiting(r, MODEL) == 0
    assert stored_requests(adv) == before  # not one of the 41 was stored


def test_a_list_that_fits_runs_every_prompt(adv: Cluster) -> None:
    body = {"model": MODEL, "prompt": [f"p{i}" for i in range(30)], "max_tokens": 2, "temperature": 0}
    resp = requests.post(f"{adv.url}/v1/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    assert sorted(c["index"] for c in resp.json()["choices"]) == list(range(30))


def test_too_many_generations_is_a_400_before_any_work(adv: Cluster) -> None:
    body = {"model": MODEL, "prompt": [f"p{i}" for i in range(9)], "n": 8, "max_tokens": 2}  # 72 > 64
    resp = requests.post(f"{adv.url}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "too_many_choices"


def post_from(address: str, port: int, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """POST /v1/requests from a loopback address of our choosing: with keys off, the owner is the address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(address, 0))
    try:
        conn.request("POST", "/v1/requests", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_one_owner_cannot_fill_the_queue_against_another(adv: Cluster) -> None:
    r = bus.connect(adv.env["REDIS_URL"])
    wait_for(lambda: bus.num_waiting(r, MODEL) == 0, 60, "an empty queue")
    body = {"prompt": "flood", "max_new_tokens": 2000, "ignore_eos": True}
    alice_ids: list[str] = []
    try:
        with requests.Session() as alice:
            for _ in range(80):  # the batch's 24 places, then the queue's 40 (MAX_QUEUED)
                resp = alice.post(f"{adv.url}/v1/requests", json=body, timeout=30)
                if resp.status_code != 202:
                    assert resp.status_code == 429 and resp.json()["error"]["code"] == "queue_full"
                    break
                alice_ids.append(resp.json()["id"])
        status, answer = post_from("127.0.0.2", adv.port, {"prompt": "bob", "max_new_tokens": 1})
        print(f"queue share: {len(alice_ids)} of Alice's requests accepted, then Bob got {status}")
        assert status == 202, answer
        assert bus.num_waiting(r, MODEL) <= 40
    finally:
        for rid in alice_ids:
            requests.delete(f"{adv.url}/v1/requests/{rid}", timeout=10)
