"""The whole pipeline on real parts: HTTP submit, Redis, a Celery worker's engine, SSE and WebSocket."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devtools.clients import SseEvent, indexed, read_sse, read_ws, stream_text, submit
from tests.e2e.conftest import greedy_text

PROMPTS = [
    "Once upon a time",
    "The quick brown fox jumps over the lazy dog, again and again",
    "héllo wörld",
    "Q:",
    "A longer prompt that goes on for a while so that the prompt lengths differ quite a lot between requests",
    "1 2 3 4 5",
    "日本語のテキスト",
    "def main():\n    return 42",
]


def assert_well_formed(events: list[SseEvent]) -> None:
    """Indexes run 0..n without a gap or repeat, and only the last event is not a token."""
    events = indexed(events)
    assert [int(e.id or -1) for e in events] == list(range(len(events)))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert all(e.event == "token" for e in events[:-1])
    assert events[-1].event == "done", events[-1]


def test_concurrent_requests_share_steps_and_match_generate(live_url: str, reference: Any) -> None:
    max_new = 160
    # Past EOS, so every request runs its full length and they overlap however soon the model emits EOS.
    subs = [
        submit(live_url, prompt=p, max_new_tokens=max_new, temperature=0, ignore_eos=True) for p in PROMPTS
    ]
    with ThreadPoolExecutor(len(subs)) as pool:
        streams = list(pool.map(lambda s: read_sse(s["stream_url"]), subs))
    largest = []
    for prompt, sub, events in zip(PROMPTS, subs, streams, strict=True):
        assert_well_formed(events)
        text = stream_text(events)
        expected = greedy_text(reference, prompt, max_new, ignore_eos=True)
        assert text == expected, f"{prompt!r} diverged from model.generate"
        status = requests.get(f"{live_url}/v1/requests/{sub['id']}", timeout=5).json()
        assert status["status"] == "finished"
        assert status["text"] == text
        assert status["usage"] == events[-1].data["usage"]
        assert status["usage"]["prompt_tokens"] == len(reference[0].encode(prompt))
        assert 0 <= status["timings"]["ttft_s"] <= status["timings"]["total_s"]
        largest.append(status["largest_batch"])
    assert max(largest) > 1, f"requests never shared a decode step: {largest}"
    workers = requests.get(f"{live_url}/model", timeout=5).json()["workers"]
    assert max(w["largest_batch"] for w in workers) > 1


def test_sse_and_websocket_deliver_the_same_events(live_url: str) -> None:
    sub = submit(live_url, prompt="Same text both ways", max_new_tokens=40, temperature=0.8, seed=3)
    sse_events = read_sse(sub["stream_url"])
    ws_messages = read_ws(sub["websocket_url"])
    assert_well_formed(sse_events)
    ws_messages = [m for m in ws_messages if m["event"] != "queued"]
    assert [m["event"] for m in ws_messages] == [e.event for e in indexed(sse_events)]
    assert "".join(m.get("text", "") for m in ws_messages) == stream_text(sse_events)
    assert ws_messages[-1]["usage"] == sse_events[-1].data["usage"]
    assert [m["index"] for m in ws_messages] == list(range(len(ws_messages)))


def test_generate_streams_ttft_then_tokens_then_done(live_url: str, reference: Any) -> None:
    events = read_sse(
        f"{live_url}/v1/generate",
        method="POST",
        json={"prompt": "One shot", "max_new_tokens": 12, "temperature": 0},
    )
    events = [e for e in events if e.event != "queued"]
    assert events[0].event == "ttft" and 0 <= events[0].data < 60
    assert_well_formed(events[1:])
    assert stream_text(events) == greedy_text(reference, "One shot", 12)


def test_generate_nobatch_equals_the_batched_greedy_text(live_url: str, reference: Any) -> None:
    body = {"prompt": "Baseline check", "max_new_tokens": 24, "temperature": 0}
    resp = requests.post(f"{live_url}/v1/generate_nobatch", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    batched = stream_text(read_sse(submit(live_url, **body)["stream_url"]))
    assert resp.json()["text"] == batched == greedy_text(reference, "Baseline check", 24)


def test_stop_string_ends_the_stream_before_it(live_url: str) -> None:
    body = {"prompt": "Stop test", "max_new_tokens": 40, "temperature": 0, "ignore_eos": True}
    full = stream_text(read_sse(submit(live_url, **body)["stream_url"]))
    stop = full[10:12]
    events = read_sse(submit(live_url, **body, stop=stop)["stream_url"])
    assert events[-1].data["finish_reason"] == "stop"
    assert stream_text(events) == full[: full.index(stop)]


def test_seeded_sampling_repeats(live_url: str) -> None:
    body = {
        "prompt": "Seeded",
        "max_new_tokens": 30,
        "temperature": 1.0,
        "top_k": 50,
        "top_p": 0.9,
        "seed": 11,
    }
    first = stream_text(read_sse(submit(live_url, **body)["stream_url"]))
    second = stream_text(read_sse(submit(live_url, **body)["stream_url"]))
    assert first == second


def test_late_subscriber_replays_the_whole_stream(live_url: str) -> None:
    sub = submit(live_url, prompt="Replay me", max_new_tokens=20, temperature=0)
    first = read_sse(sub["stream_url"])
    again = read_sse(sub["stream_url"])
    assert [(e.event, e.data) for e in indexed(first)] == [(e.event, e.data) for e in again]


def test_health_and_model_describe_the_live_worker(live_url: str) -> None:
    health = requests.get(f"{live_url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    model = requests.get(f"{live_url}/model", timeout=5).json()
    assert model["model"] == "torchweave-tiny"
    assert model["vocab_size"] == 259 and model["eos_token_id"] == 2
    assert model["device"] == "cpu" and model["max_batch_size"] == 8
    assert len(model["workers"]) >= 1
