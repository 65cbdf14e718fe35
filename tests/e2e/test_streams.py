"""Streams that lose nothing: resume after a drop, replay, several subscribers, cancel, expiry."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import simple_websocket
from celery import Celery

from devtools.clients import SseEvent, connect_ws, indexed, parse_sse, read_sse, read_ws, stream_text, submit
from devtools.servers import start_api, wait_for
from shared import admission, bus, keys
from shared.messages import GenerationRequest, SamplingParams

# As long as the context allows, past EOS: it cannot end by itself while a test cancels or times it out.
LONG = {"prompt": "A long story", "max_new_tokens": 2000, "temperature": 0, "ignore_eos": True}


def read_first(url: str, k: int, **kwargs: Any) -> tuple[list[SseEvent], dict[str, str]]:
    """Read k stored events of an SSE stream, then drop the connection."""
    events: list[SseEvent] = []
    method = kwargs.pop("method", "GET")
    with requests.request(method, url, stream=True, timeout=30, **kwargs) as resp:
        assert resp.status_code == 200, resp.text
        lines: list[bytes] = []
        for line in resp.iter_lines(delimiter=b"\n"):
            lines.append(line)
            if line == b"":
                events = indexed(parse_sse([*lines]))
                if len(events) >= k:
                    break
        return events[:k], dict(resp.headers)


def slots_free(url: str) -> int:
    return sum(w["slots_free"] for w in requests.get(f"{url}/model", timeout=5).json()["workers"])


def final_status(url: str, rid: str) -> dict[str, Any]:
    wait_for(
        lambda: (
            requests.get(f"{url}/v1/requests/{rid}", timeout=5).json()["status"] != "running"
            and requests.get(f"{url}/v1/requests/{rid}", timeout=5).json()["status"] != "queued"
        ),
        30,
        "the end",
    )
    status: dict[str, Any] = requests.get(f"{url}/v1/requests/{rid}", timeout=5).json()
    return status


def assert_contiguous(events: list[SseEvent]) -> None:
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert events[-1].event == "done"


def test_reconnect_with_last_event_id_continues_without_gap_or_repeat(live_url: str) -> None:
    sub = submit(live_url, prompt="Resume me", max_new_tokens=400, temperature=0, ignore_eos=True)
    head, _ = read_first(sub["stream_url"], 5)
    assert [e.data["index"] for e in head] == [0, 1, 2, 3, 4]
    middle, _ = read_first(sub["stream_url"], 7, headers={"Last-Event-ID": head[-1].id or ""})
    tail = indexed(read_sse(f"{sub['stream_url']}?from={middle[-1].id}"))
    events = head + middle + tail
    assert_contiguous(events)
    final = requests.get(f"{live_url}/v1/requests/{sub['id']}", timeout=5).json()
    assert stream_text(events) == final["text"]
    assert final["status"] == "finished"
    assert final["usage"] == events[-1].data["usage"]


def test_two_subscribers_and_a_late_one_get_the_same_events(live_url: str) -> None:
    sub = submit(live_url, prompt="Shared", max_new_tokens=200, temperature=0, ignore_eos=True)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: indexed(read_sse(sub["stream_url"])), range(2))
    late = read_sse(sub["stream_url"])
    assert (
        [(e.event, e.data) for e in a] == [(e.event, e.data) for e in b] == [(e.event, e.data) for e in late]
    )
    assert_contiguous(a)


def close_quietly(ws: simple_websocket.Client) -> None:
    """Close from our side; the server may have closed first after the last event."""
    if ws.connected:
        ws.close()


def test_websocket_resumes_like_sse(live_url: str) -> None:
    sub = submit(live_url, prompt="Socket resume", max_new_tokens=300, temperature=0, ignore_eos=True)
    ws = connect_ws(sub["websocket_url"])
    head: list[dict[str, Any]] = []
    while len(head) < 6:
        message = json.loads(ws.receive(timeout=30))
        if message["event"] == "token":
            head.append(message)
    close_quietly(ws)
    ws = connect_ws(sub["websocket_url"])
    ws.send(json.dumps({"from": head[-1]["index"]}))
    rest: list[dict[str, Any]] = []
    while not rest or rest[-1]["event"] == "token":
        rest.append(json.loads(ws.receive(timeout=30)))
    close_quietly(ws)
    messages = [m for m in head + rest if m["event"] != "queued"]
    assert [m["index"] for m in messages] == list(range(len(messages)))
    assert "".join(m.get("text", "") for m in messages) == stream_text(read_sse(sub["stream_url"]))
    query = read_ws(f"{sub['websocket_url']}?from={head[-1]['index']}")
    assert [m["index"] for m in query] == [m["index"] for m in rest]


def test_cancel_mid_stream_ends_the_stream_and_frees_the_slot(live_url: str) -> None:
    sub = submit(live_url, **LONG)
    head, _ = read_first(sub["stream_url"], 3)
    resp = requests.delete(f"{live_url}/v1/requests/{sub['id']}", timeout=5)
    assert resp.status_code == 202 and resp.json()["status"] == "cancelling"
    events = indexed(read_sse(f"{sub['stream_url']}?from={head[-1].id}"))
    assert events[-1].event == "done" and events[-1].data["finish_reason"] == "cancelled"
    assert events[-1].data["usage"]["completion_tokens"] < LONG["max_new_tokens"]
    status = final_status(live_url, sub["id"])
    assert status["status"] == "cancelled"
    wait_for(lambda: slots_free(live_url) == 8, 10, "the slot to come back")
    again = requests.delete(f"{live_url}/v1/requests/{sub['id']}", timeout=5)
    assert again.status_code == 409


def test_disconnect_from_generate_cancels_and_frees_the_slot(live_url: str) -> None:
    _, headers = read_first(f"{live_url}/v1/generate", 3, method="POST", json=LONG)
    status = final_status(live_url, headers["X-Request-Id"])
    assert status["status"] == "cancelled" and status["finish_reason"] == "cancelled"
    assert status["usage"]["completion_tokens"] < LONG["max_new_tokens"]
    wait_for(lambda: slots_free(live_url) == 8, 10, "the slot to come back")


def test_disconnect_from_subscription_cancels_only_when_asked(live_url: str) -> None:
    keep = submit(live_url, prompt="Keep going", max_new_tokens=300, temperature=0, ignore_eos=True)
    read_first(keep["stream_url"], 2)
    kept = final_status(live_url, keep["id"])
    assert kept["status"] == "finished" and kept["usage"]["completion_tokens"] == 300
    drop = submit(live_url, **LONG, cancel_on_disconnect=True)
    read_first(drop["stream_url"], 2)
    assert final_status(live_url, drop["id"])["status"] == "cancelled"


def test_queued_request_reports_its_position_and_can_be_cancelled(live_url: str) -> None:
    busy = [submit(live_url, **LONG) for _ in range(8)]  # fill the worker's 8 slots
    wait_for(lambda: slots_free(live_url) == 0, 10, "the worker to fill up")
    waiting = submit(live_url, prompt="Wait your turn", max_new_tokens=5)
    status = requests.get(f"{live_url}/v1/requests/{waiting['id']}", timeout=5).json()
    assert status["status"] == "queued"
    assert status["queue"]["position"] == 0 and status["queue"]["workers"] == 1
    first, _ = read_first_raw(waiting["stream_url"])
    assert first.event == "queued" and first.data["position"] == 0
    resp = requests.delete(f"{live_url}/v1/requests/{waiting['id']}", timeout=5)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    events = read_sse(waiting["stream_url"])
    assert [e.event for e in events] == ["done"] and events[0].data["finish_reason"] == "cancelled"
    for sub in busy:
        requests.delete(f"{live_url}/v1/requests/{sub['id']}", timeout=5)
    wait_for(lambda: slots_free(live_url) == 8, 20, "every slot to come back")
    assert requests.get(f"{live_url}/v1/requests/{waiting['id']}", timeout=5).json()["status"] == "cancelled"


def read_first_raw(url: str) -> tuple[SseEvent, None]:
    with requests.get(url, stream=True, timeout=30) as resp:
        lines: list[bytes] = []
        for line in resp.iter_lines(delimiter=b"\n"):
            lines.append(line)
            if line == b"" and parse_sse(lines):
                return parse_sse(lines)[0], None
    raise AssertionError("no event")


def test_expired_stream_is_404_saying_so(live_url: str, redis_url: str) -> None:
    sub = submit(live_url, prompt="Short lived", max_new_tokens=3)
    read_sse(sub["stream_url"])
    r = bus.connect(redis_url)
    ttl = r.ttl(keys.stream_key(sub["id"]))
    assert 3500 < ttl <= 3600  # STREAM_TTL's default: one hour from the end
    for key in (keys.stream_key(sub["id"]), keys.request_key(sub["id"])):
        r.pexpire(key, 1)  # let the hour pass
    time.sleep(0.05)
    for path in ("", "/stream"):
        resp = requests.get(f"{live_url}/v1/requests/{sub['id']}{path}", timeout=5)
        assert resp.status_code == 404 and "expired" in resp.json()["error"]["message"]


def test_bad_resume_point_is_400(live_url: str) -> None:
    sub = submit(live_url, prompt="x", max_new_tokens=2)
    resp = requests.get(sub["stream_url"], headers={"Last-Event-ID": "abc"}, timeout=5)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "from"


def test_failure_reaches_the_client_as_an_error_event(live_url: str, redis_url: str) -> None:
    # The API refuses a prompt that cannot fit; a request stored without that check (an older API,
    # say) fails in the worker, and the client must hear why.
    req = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model="torchweave-tiny",
        prompt="x" * 3000,
        params=SamplingParams(max_new_tokens=4),
        created_at=time.time(),
    )
    admission.admit(bus.connect(redis_url), [req], ttl_s=60)
    Celery(broker=redis_url).send_task(
        keys.GENERATE_TASK, args=[req.request_id], queue=keys.queue_name(req.model)
    )
    events = read_sse(f"{live_url}/v1/requests/{req.request_id}/stream")
    assert events[-1].event == "error"
    assert "3001 tokens" in events[-1].data["message"] and "2048" in events[-1].data["message"]
    status = requests.get(f"{live_url}/v1/requests/{req.request_id}", timeout=5).json()
    assert status["status"] == "failed" and "context" in status["error"]


def test_timeout_ends_generation_with_its_own_reason(live_url: str) -> None:
    sub = submit(live_url, **LONG, timeout=0.5)
    events = indexed(read_sse(sub["stream_url"]))
    assert events[-1].data["finish_reason"] == "timeout"
    assert 0 < events[-1].data["usage"]["completion_tokens"] < LONG["max_new_tokens"]


def test_stream_survives_an_api_restart(live_url: str, server_env: dict[str, str], log_dir: Path) -> None:
    other, other_url = start_api(server_env, log_dir)
    try:
        sub = submit(
            other_url, prompt="Across API processes", max_new_tokens=600, temperature=0, ignore_eos=True
        )
        head, _ = read_first(f"{other_url}/v1/requests/{sub['id']}/stream", 4)
    finally:
        other.stop()  # the API process that took the request goes away mid-stream
    rest = indexed(
        read_sse(f"{live_url}/v1/requests/{sub['id']}/stream", headers={"Last-Event-ID": head[-1].id})
    )
    events = head + rest
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 600
    whole = requests.get(f"{live_url}/v1/requests/{sub['id']}", timeout=5).json()
    assert stream_text(events) == whole["text"]
