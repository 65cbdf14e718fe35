"""A bounded fuzz pass over the WebSocket protocol: random frames, sizes, orders and raw garbage for
30 s from two threads, while victim streams run. The server stays up and the victims flow on."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import threading
import time

import requests
import simple_websocket
from wsproto.utilities import LocalProtocolError

from devtools.clients import connect_ws, submit
from devtools.servers import wait_for
from tests.adversarial.conftest import Cluster, Victim, connect_from

FUZZ_S = 30.0
# What the fuzzing client itself meets when the server has closed on it: the server's right, not a fault.
CLIENT_SIDE = (simple_websocket.ConnectionClosed, OSError, LocalProtocolError)
FUZZ_FROM = "127.0.0.5"


def handshake(port: int, path: str, rng: random.Random) -> socket.socket:
    """A raw socket after a WebSocket upgrade request (valid or not): what follows is up to the fuzzer."""
    sock = connect_from(FUZZ_FROM, port)
    sock.settimeout(5)
    key = base64.b64encode(os.urandom(16)).decode()
    headers = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade"]
    if rng.random() < 0.9:
        headers.append(f"Sec-WebSocket-Key: {key}")
    headers.append(f"Sec-WebSocket-Version: {rng.choice(['13', '13', '8', 'x'])}")
    sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
    with contextlib.suppress(OSError):
        sock.recv(4096)
    return sock


def random_payload(rng: random.Random) -> str | bytes:
    kind = rng.randrange(6)
    size = rng.choice([0, 1, 10, 1000, 70_000, 200_000])
    if kind == 0:
        return json.dumps({"from": rng.choice([-5, -1, 0, 3, 10**6, 2**64, "x", None, 1.5])})
    if kind == 1:
        return os.urandom(size)
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(min(size, 5000)))
    if kind == 3:
        depth = rng.choice([10, 1000, 40_000])
        return '{"from":' * depth + "1" + "}" * depth
    if kind == 4:
        return "x" * size
    return json.dumps({"from": 1, "extra": list(range(rng.randrange(100)))})


def fuzz_once(adv: Cluster, ws_urls: list[str], rng: random.Random) -> None:
    action = rng.randrange(4)
    if action == 0:  # a real client saying random things in random order
        ws = connect_ws(rng.choice(ws_urls))
        try:
            for _ in range(rng.randrange(1, 6)):
                ws.send(random_payload(rng))
                if rng.random() < 0.3:
                    ws.receive(timeout=0.2)
        except CLIENT_SIDE:
            pass
        finally:
            if rng.random() < 0.5:
                with contextlib.suppress(Exception):
                    ws.close()
            else:
                ws.sock.close()  # vanish without a close frame
    elif action == 1:  # garbage after the upgrade
        path = rng.choice(ws_urls).split("127.0.0.1", 1)[1].split(":", 1)[1].split("/", 1)[1]
        sock = handshake(adv.port, "/" + path, rng)
        with contextlib.suppress(OSError):
            sock.sendall(os.urandom(rng.choice([1, 2, 14, 200, 70_000])))
        sock.close()
    elif action == 2:  # a request id that does not exist, or a path full of junk
        junk = rng.choice(["nope", "a" * 300, "%00", "..%2F..", str(rng.random())])
        sock = handshake(adv.port, f"/v1/requests/{junk}/ws", rng)
        sock.close()
    else:  # many frames back to back, fragmented by the socket
        ws = connect_ws(rng.choice(ws_urls))
        with contextlib.suppress(*CLIENT_SIDE):
            for _ in range(50):
                ws.send('{"from": 0}')
        ws.sock.close()


class RollingVictim(Victim):
    """A victim that submits its next request as soon as one ends, until told to stop: it streams
    through the whole fuzz pass however long that lasts."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__("")
        self.url, self.name = url, name
        self.stop = threading.Event()
        self.rounds = 0
        self.failures: list[str] = []

    def roll(self) -> None:
        while not self.stop.is_set():
            sub = submit(self.url, prompt=self.name, max_new_tokens=500, temperature=0, ignore_eos=True)
            self.stream_url, self.indexes = sub["stream_url"], []
            self.follow()
            if self.last != "done" or self.indexes != list(range(len(self.indexes))):
                self.failures.append(f"{sub['id']}: ended {self.last!r} after indexes {self.indexes[-5:]}")
            self.rounds += 1


def test_websocket_fuzz_leaves_the_server_up_and_the_victims_flowing(adv: Cluster) -> None:
    victims = [RollingVictim(adv.url, f"victim {i}") for i in range(4)]
    threads = [threading.Thread(target=v.roll, daemon=True) for v in victims]
    for t in threads:
        t.start()
    wait_for(lambda: all(len(v.times) >= 3 for v in victims), 60, "every victim streaming")
    targets = [submit(adv.url, prompt=f"fuzz target {i}", max_new_tokens=50) for i in range(3)]
    ws_urls = [t["websocket_url"] for t in targets]
    started = time.monotonic()
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() - started < FUZZ_S:
                fuzz_once(adv, ws_urls, rng)
        except BaseException as exc:  # the fuzzer itself must not hide a failure
            errors.append(exc)

    fuzzers = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    try:
        for t in fuzzers:
            t.start()
        for t in fuzzers:
            t.join(FUZZ_S + 60)
    finally:
        ended = time.monotonic()
        for v in victims:
            v.stop.set()
        for t in threads:
            t.join(180)
    assert not errors, errors
    assert requests.get(f"{adv.url}/v1/models", timeout=10).status_code == 200
    gaps = [v.largest_gap(started, ended) for v in victims]
    print(f"victims' largest token gap during the fuzz pass: {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 2.0
    assert all(v.rounds >= 1 for v in victims)
    assert [f for v in victims for f in v.failures] == []  # every round done, indexes 0..n
