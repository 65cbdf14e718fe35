"""The smaller holes: chat prompts over the context, bad event ids, internals in errors, failed loads that
never expire, oversized loads, readiness without the default model, and a record lost mid-generation."""

from __future__ import annotations

import time
from typing import Any

import requests

from devtools.clients import submit
from devtools.servers import wait_for
from shared import bus, fleet, keys
from shared.messages import WorkerInfo
from tests.adversarial.conftest import Cluster

MODEL = "torchweave-tiny"


def models(adv: Cluster) -> dict[str, dict[str, Any]]:
    """Every model GET /v1/models lists: the callable ones (`data`) and the others (`history`)."""
    body = requests.get(f"{adv.url}/v1/models", timeout=10).json()
    return {m["id"]: m for m in body["data"] + body["history"]}


def test_a_chat_prompt_over_the_context_is_a_400_naming_it(adv: Cluster) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 2100}], "max_tokens": 8}
    resp = requests.post(f"{adv.url}/v1/chat/completions", json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "messages" and error["code"] == "context_length_exceeded"


def test_a_bad_last_event_id_on_model_events_is_a_400(adv: Cluster) -> None:
    for bad in ("garbage", "1-2-3", "99999999999999999999999-0", "-1-0"):
        resp = requests.get(f"{adv.url}/v1/models/events", headers={"Last-Event-ID": bad}, timeout=10)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["code"] == "invalid_event_id"


def test_errors_name_no_internal_paths(adv: Cluster) -> None:
    resp = requests.post(f"{adv.url}/v1/models/load", json={"model": "/etc/passwd"}, timeout=10)
    assert resp.status_code == 400 and "outside MODEL_DIR" in resp.json()["error"]["message"]
    assert "/work" not in resp.text and adv.env["CACHE_DIR"] not in resp.text


def test_a_failed_load_is_listed_then_forgotten(adv: Cluster) -> None:
    resp = requests.post(f"{adv.url}/v1/models/load", json={"model": "./never-existed"}, timeout=10)
    assert resp.status_code == 202, resp.text
    wait_for(lambda: models(adv).get("./never-existed", {}).get("state") == "failed", 60, "the failure")
    reason = models(adv)["./never-existed"]["reason"]
    assert "does not exist" in reason and adv.env["CACHE_DIR"] not in reason
    wait_for(lambda: "./never-existed" not in models(adv), 30, "the failure forgotten (FAILED_LOAD_TTL 2 s)")


def test_a_load_for_more_workers_than_live_is_a_400(adv: Cluster) -> None:
    resp = requests.post(
        f"{adv.url}/v1/models/load", json={"model": "torchweave-tiny2", "workers": 1024}, timeout=10
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "workers"
    assert "1 workers are live" in resp.json()["error"]["message"]


def test_a_worker_stops_generating_for_a_record_that_is_gone(adv: Cluster) -> None:
    r = bus.connect(adv.env["REDIS_URL"])
    sub = submit(adv.url, prompt="lost record", max_new_tokens=2000, temperature=0, ignore_eos=True)
    wait_for(lambda: bus.last_index(r, sub["id"]) >= 3, 30, "tokens")
    names = (keys.request_key(sub["id"]), keys.stream_key(sub["id"]))
    r.delete(*names)  # as a Redis restart without its data
    lost_at = time.time()

    def heartbeat_after(moment: float) -> WorkerInfo | None:
        fresh = [w for w in fleet.list_workers(r) if w.model == MODEL and w.updated_at > moment]
        return fresh[0] if fresh else None

    def freed() -> bool:
        beat = heartbeat_after(lost_at)
        return beat is not None and beat.slots_free == 24

    wait_for(freed, 30, "the slot freed")
    wait_for(lambda: not r.exists(*names), 10, "what the last step wrote removed")
    seen_clean = time.time()
    wait_for(lambda: heartbeat_after(seen_clean) is not None, 10, "one more heartbeat")
    assert not r.exists(*names)  # nothing written back since: generation stopped


def test_health_is_not_ready_while_the_default_model_is_unloaded(adv: Cluster) -> None:
    assert requests.get(f"{adv.url}/health/ready", timeout=10).status_code == 200
    try:
        assert (
            requests.post(f"{adv.url}/v1/models/unload", json={"model": MODEL}, timeout=10).status_code == 202
        )
        wait_for(lambda: requests.get(f"{adv.url}/health", timeout=10).status_code == 503, 30, "not ready")
        body = requests.get(f"{adv.url}/health/ready", timeout=10).json()
        assert MODEL in body["reason"]
        assert requests.get(f"{adv.url}/health/live", timeout=10).status_code == 200
    finally:
        requests.post(f"{adv.url}/v1/models/load", json={"model": MODEL}, timeout=10)
        wait_for(lambda: requests.get(f"{adv.url}/health", timeout=10).status_code == 200, 90, "ready again")


def test_duplicate_tool_names_are_a_400_naming_them(adv: Cluster) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [tool, tool],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_tokens": 4,
    }
    resp = requests.post(f"{adv.url}/v1/chat/completions", json=body, timeout=10)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "tools" and "weather" in error["message"] and "unique" in error["message"]
