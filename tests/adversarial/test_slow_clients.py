"""Slow and greedy clients: a body that trickles is cut off after BODY_TIMEOUT, one address cannot hold
more than MAX_CONNECTIONS_PER_CLIENT connections, and 600 slow sockets from one address leave the API
serving everyone else."""

from __future__ import annotations

import contextlib
import socket
import time

import requests

from devtools.scrape import scrape, total
from tests.adversarial.conftest import Cluster, connect_from

SLOW_HEAD = (
    "POST /v1/requests HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    'Content-Length: 1000\r\n\r\n{"prompt": '
)


def read_reply(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection or timeout_s passes."""
    sock.settimeout(timeout_s)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_trickling_body_is_cut_off_with_408(adv: Cluster) -> None:
    sock = connect_from("127.0.0.2", adv.port)
    sock.sendall(SLOW_HEAD.encode())  # 11 bytes of the 1000 promised, then nothing
    started = time.monotonic()
    reply = read_reply(sock, timeout_s=20)
    waited = time.monotonic() - started
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"did not arrive within 2 s" in reply
    assert waited < 10  # BODY_TIMEOUT is 2 s here, plus the keep-alive drain


def test_one_address_holds_at_most_its_share_of_connections(adv: Cluster) -> None:
    streams = []
    try:
        for _ in range(32):  # MAX_CONNECTIONS_PER_CLIENT here: 32 long-lived event streams
            sock = connect_from("127.0.0.3", adv.port)
            sock.sendall(b"GET /v1/models/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"
            streams.append(sock)
        extra = connect_from("127.0.0.3", adv.port)
        reply = read_reply(extra, timeout_s=10)
        extra.close()
        assert reply.startswith(b"HTTP/1.1 429") and b"too_many_connections" in reply
        # Another address is served as usual meanwhile, and the refusal is counted.
        assert requests.get(f"{adv.url}/v1/models", timeout=10).status_code == 200
        samples = scrape(f"{adv.url}/metrics")
        rejected = "torchweave_requests_rejected_total"
        assert total(samples, rejected, status="429", reason="too_many_connections") >= 1
    finally:
        for sock in streams:
            sock.close()


def test_six_hundred_slow_sockets_leave_the_api_serving(adv: Cluster) -> None:
    slow = []
    try:
        for _ in range(600):
            sock = connect_from("127.0.0.4", adv.port)
            with contextlib.suppress(OSError):  # past the cap the server answers 429 and closes
                sock.sendall(SLOW_HEAD.encode())
            slow.append(sock)
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            assert requests.get(f"{adv.url}/v1/models", timeout=10).status_code == 200
            latencies.append(time.monotonic() - started)
        print(f"/v1/models under 600 slow sockets: slowest of 10 in {max(latencies) * 1000:.0f} ms")
        assert max(latencies) < 5
        refused = sum(read_reply(s, timeout_s=0.5).startswith(b"HTTP/1.1 429") for s in slow[32:])
        assert refused > 500
    finally:
        for sock in slow:
            sock.close()
