"""A resume point past any stream's range (2**64 and up) is refused at the edge, over SSE and WebSocket,
and 20 victim streams flow on meanwhile with no gap over 2 s. Behind the edge, the fanout drops a
subscription Redis refuses to read instead of stalling every stream of the process."""

from __future__ import annotations

import json
import queue
import time
import uuid

import pytest
import requests
import simple_websocket

from api.streaming.fanout import StreamFanout
from devtools.clients import connect_ws, submit
from shared import bus, keys
from shared.messages import DoneEvent, FinishReason, TokenEvent, Usage
from tests.adversarial.conftest import Cluster, start_victims

POISON = "18446744073709551616"  # 2**64: no Redis stream id can hold it


def attack(url: str) -> None:
    """Every way in for a poisoned resume point, each answered and closed at once."""
    target = submit(url, prompt="target", max_new_tokens=20, temperature=0)
    stream_url = target["stream_url"]
    for headers, params in (
        ({"Last-Event-ID": POISON}, {}),
        ({}, {"from": POISON}),
        ({}, {"from": "9" * 40}),
    ):
        resp = requests.get(stream_url, headers=headers, params=params, timeout=10)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == "from"
    for ws_url, hello in (
        (f"{target['websocket_url']}?from={POISON}", None),
        (target["websocket_url"], POISON),
    ):
        ws = connect_ws(ws_url)
        if hello is not None:
            ws.send(json.dumps({"from": int(hello)}))
        message = json.loads(ws.receive(timeout=10))
        assert message["event"] == "error" and "from" in message["message"]
        with pytest.raises(simple_websocket.ConnectionClosed):
            ws.receive(timeout=10)
        assert ws.close_reason == 1008


def test_poisoned_resume_is_refused_and_victims_keep_flowing(adv: Cluster) -> None:
    victims, threads = start_victims(adv.url, 20, max_new_tokens=1000)
    started = time.monotonic()
    for _ in range(3):  # connect, be refused, disconnect; again
        attack(adv.url)
    ended = time.monotonic()
    for t in threads:
        t.join(120)
    gaps = [v.largest_gap(started, ended + 2.0) for v in victims]
    print(f"victims' largest token gap during the attack: {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 2.0
    for v in victims:
        assert v.last == "done" and v.indexes == list(range(len(v.indexes)))


def test_the_fanout_drops_only_the_subscription_redis_refuses(redis_url: str) -> None:
    r = bus.connect(redis_url.rsplit("/", 1)[0] + "/6")
    fanout = StreamFanout(r)
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    victim = fanout.subscribe(good, -1)
    poisoned = fanout.subscribe(bad, 2**64)  # past the edge's check: only the fanout stands here
    pipe = r.pipeline()
    for i in range(5):
        bus.append_event(pipe, good, TokenEvent(index=i, text=f"t{i}"))
    bus.append_event(pipe, good, DoneEvent(index=5, finish_reason=FinishReason.LENGTH, usage=Usage.of(1, 5)))
    pipe.execute()
    got: list[int] = []
    deadline = time.monotonic() + 20
    while len(got) < 6 and time.monotonic() < deadline:
        got += [event.index for _, event in victim.get(timeout_s=1.0)]
    assert got == list(range(6))
    try:
        _, event = poisoned.events.get(timeout=10)
    except queue.Empty:
        pytest.fail("the poisoned subscription was never ended")
    assert event.type == "error" and "cannot be read" in event.message
    fanout.unsubscribe(victim)
    fanout.close()
    r.delete(keys.stream_key(good))
