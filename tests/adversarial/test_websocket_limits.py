"""WebSocket abuse: oversized and malformed first messages close cleanly (1009, 1008) without holding
memory or writing HTTP into the socket; chatter after the hello closes the socket; a peer that vanishes
is noticed on the next idle tick, not left in CLOSE-WAIT."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import pytest
import simple_websocket

from devtools.clients import connect_ws, submit
from devtools.servers import wait_for
from shared import admission, bus, lifecycle
from shared.messages import GenerationRequest, SamplingParams
from tests.adversarial.conftest import Cluster, child_pids, close_wait_sockets, rss_kib


def ws_url(adv: Cluster, request_id: str) -> str:
    return f"{adv.url.replace('http://', 'ws://')}/v1/requests/{request_id}/ws"


def idle_request(adv: Cluster) -> GenerationRequest:
    """A stored request whose task was never sent: it stays queued, its stream idle, for as long as the
    test needs (REDISPATCH_AFTER is 30 s)."""
    req = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model="torchweave-tiny",
        prompt="idle",
        params=SamplingParams(max_new_tokens=4),
        created_at=time.time(),
    )
    admission.admit(bus.connect(adv.env["REDIS_URL"]), [req], ttl_s=120)
    return req


def closed_with(ws: Any) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(simple_websocket.ConnectionClosed):
        for _ in range(100):
            if ws.receive(timeout=10) is None:
                break  # nothing for 10 s: not closed
    code: int | None = ws.close_reason
    return code


def test_an_oversized_message_is_refused_with_1009_and_not_held(adv: Cluster) -> None:
    req = idle_request(adv)  # nothing else to say: the only reason to close is the message
    [worker_pid] = child_pids(adv.api.pid)
    before = rss_kib(worker_pid)
    ws = connect_ws(ws_url(adv, req.request_id))
    with contextlib.suppress(simple_websocket.ConnectionClosed, OSError):  # closed while we still send
        ws.send("x" * (32 * 1024 * 1024))  # 32 MiB; the limit is 64 KiB
    code = closed_with(ws)
    print(f"closed with {code}")
    assert code in (1009, None)  # None: the close frame raced our own sending
    wait_for(lambda: close_wait_sockets(adv.port) == 0, 10, "the server to close its side")
    grown = rss_kib(worker_pid) - before
    lifecycle.cancel(bus.connect(adv.env["REDIS_URL"]), req, ttl_s=60)
    print(f"API memory after a 32 MiB frame: {grown / 1024:+.1f} MiB")
    assert grown < 16 * 1024


@pytest.mark.parametrize(
    ("hello", "why"),
    [
        ("[" * 30_000 + "]" * 30_000, "not JSON"),  # deep enough to blow the parser's recursion
        ("not json", "not JSON"),
        (json.dumps({"from": "3"}), "integer"),
        (json.dumps([1, 2]), "integer"),
    ],
)
def test_a_malformed_hello_closes_with_1008_and_a_reason(adv: Cluster, hello: str, why: str) -> None:
    sub = submit(adv.url, prompt="hello", max_new_tokens=3)
    ws = connect_ws(sub["websocket_url"])
    ws.send(hello)
    message = json.loads(ws.receive(timeout=10))
    assert message["event"] == "error" and why in message["message"]
    assert closed_with(ws) == 1008


def test_chatter_after_the_hello_closes_the_socket(adv: Cluster) -> None:
    req = idle_request(adv)
    ws = connect_ws(ws_url(adv, req.request_id))
    ws.send(json.dumps({"from": -1}))
    for _ in range(20):
        ws.send("chatter " * 1000)
    assert closed_with(ws) == 1008
    lifecycle.cancel(bus.connect(adv.env["REDIS_URL"]), req, ttl_s=60)


def test_a_vanished_peer_is_noticed_on_an_idle_tick(adv: Cluster) -> None:
    req = idle_request(adv)
    sockets = []
    for _ in range(5):
        ws = connect_ws(ws_url(adv, req.request_id))
        ws.send(json.dumps({"from": -1}))
        sockets.append(ws)
    time.sleep(0.5)  # the relays are following the idle stream
    for ws in sockets:
        ws.sock.close()  # gone without a close frame, as a killed client goes
    wait_for(lambda: close_wait_sockets(adv.port) == 0, 10, "the server to close its side")
    lifecycle.cancel(bus.connect(adv.env["REDIS_URL"]), req, ttl_s=60)
