"""`make run` driven as a terminal drives it (devtools/terminal.py: its own pty and session, Ctrl-C typed).

Ctrl-C with requests running: open streams end with a `reconnect` event, the drain hands the requests
back before Redis stops, the stop takes at most DRAIN_TIMEOUT + 10 s, and the next `make run` finishes
them with no gap. An idle Ctrl-C stops everything within 10 s. A second `make run` in the same checkout
leaves the first alone; a port in use or a public HOST without credentials ends `make run` at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import simple_websocket

from devtools.clients import SseEvent, connect_ws, indexed, iter_sse, read_sse, submit
from devtools.embedded_redis import free_port
from devtools.terminal import Terminal, session_pids
from shared.settings import PROJECT_ROOT

DRAIN_TIMEOUT_S = 3
BANNER = "TorchWeave is up"
NUM_TOKENS = 1900  # the built-in model's context is 2048: long enough to outlast the drain


def run_env(server_env: dict[str, str], cache: Path, model_cache: Path) -> dict[str, str]:
    """`make run`'s environment: its own CACHE_DIR (holding the session's built model) and ports."""
    if not (cache / "models").exists():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "models").symlink_to(model_cache / "models")
    env = {k: v for k, v in server_env.items() if k != "REDIS_URL"}  # make run starts its own Redis
    env.update(
        CACHE_DIR=str(cache), PORT=str(free_port()), FLOWER_PORT=str(free_port()),
        METRICS_PORT=str(free_port()), WORKERS="1", DRAIN_TIMEOUT=str(DRAIN_TIMEOUT_S),
    )  # fmt: skip
    return env


def make_run(env: dict[str, str], log: Path) -> Terminal:
    return Terminal(["make", "run"], env, PROJECT_ROOT, log)


def stop_with_ctrl_c(term: Terminal) -> float:
    """Type Ctrl-C and wait until no process of the session is left; the seconds that took."""
    pressed = time.monotonic()
    term.ctrl_c()
    term.wait(timeout_s=120)
    while session_pids(term.session):
        assert time.monotonic() - pressed < 120, f"left running: {session_pids(term.session)}"
        time.sleep(0.1)
    return time.monotonic() - pressed


def follow(url: str, events: list[SseEvent], started: threading.Event) -> None:
    """Append a stream's events until the server closes it; `started` once the first token came."""
    with requests.get(url, stream=True, timeout=120) as resp:
        for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
            events.append(event)
            if event.event == "token":
                started.set()


def follow_ws(ws_url: str, messages: list[dict[str, Any]], closes: list[int | None]) -> None:
    """Append a WebSocket's messages until the server closes it, then its close code."""
    ws = connect_ws(ws_url)
    try:
        while True:
            msg = ws.receive(timeout=120)
            if msg is None:
                break
            messages.append(json.loads(msg))
    except simple_websocket.ConnectionClosed:
        pass
    closes.append(ws.close_reason)


def test_ctrl_c_hands_running_requests_back_and_the_next_run_finishes_them(
    server_env: dict[str, str], cache_dir: Path, tmp_path: Path
) -> None:
    env = run_env(server_env, tmp_path / "cache", cache_dir)
    url = f"http://127.0.0.1:{env['PORT']}"
    first = make_run(env, tmp_path / "first.log")
    try:
        first.wait_for_output(BANNER, 240)
        assert f"{url}/ui/" in first.output

        # A second `make run` in the same checkout says so and leaves the first alone.
        logs = tmp_path / "cache" / "run" / "logs"
        sizes = {p.name: p.stat().st_size for p in logs.glob("*.log")}
        conf = (tmp_path / "cache" / "run" / "supervisord.conf").read_text()
        began = time.monotonic()
        second = subprocess.run(
            ["make", "run"], env={**env, "PORT": str(free_port())}, cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode != 0 and time.monotonic() - began < 10
        assert "already running in this checkout" in second.stderr, second.stderr
        assert all((logs / name).stat().st_size >= size for name, size in sizes.items())
        assert (tmp_path / "cache" / "run" / "supervisord.conf").read_text() == conf
        assert requests.get(f"{url}/health", timeout=5).status_code == 200

        # The CLI finds this run's Redis (on a random port) with no REDIS_URL.
        cli = subprocess.run(
            [sys.executable, "-m", "api.cli", "keys", "list"], env=env, cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr

        subs = [
            submit(url, prompt=f"handed back {i}", max_new_tokens=NUM_TOKENS, temperature=0, ignore_eos=True)
            for i in range(2)
        ]
        events: list[SseEvent] = []
        started = threading.Event()
        follower = threading.Thread(target=follow, args=(subs[0]["stream_url"], events, started), daemon=True)
        follower.start()
        ws_messages: list[dict[str, Any]] = []
        ws_closes: list[int | None] = []
        ws_url = url.replace("http", "ws", 1) + f"/v1/requests/{subs[1]['id']}/ws"
        threading.Thread(target=follow_ws, args=(ws_url, ws_messages, ws_closes), daemon=True).start()
        assert started.wait(120), "no token streamed"
        mark = len(first.output)
        stop_s = stop_with_ctrl_c(first)
    finally:
        first.close()
    stopping = first.output[mark:]
    print(f"make run: Ctrl-C with 2 requests running stopped everything in {stop_s:.1f} s")
    assert stop_s <= DRAIN_TIMEOUT_S + 10
    follower.join(timeout=30)
    assert events[-1].event == "reconnect", events[-3:]  # not a silent close
    last = events[-1].data["last_index"]
    assert last == indexed(events)[-1].data["index"]
    assert ws_messages[-1]["event"] == "reconnect" and ws_closes == [1012]  # 1012: service restart
    assert "handing 2 requests back" in stopping
    assert "Traceback" not in stopping

    # The next run finishes both, the followed one resumed after the last index it gave.
    second_run = make_run(env, tmp_path / "second.log")
    try:
        second_run.wait_for_output(BANNER, 240)
        rest = indexed(read_sse(f"{subs[0]['stream_url']}?from={last}", timeout=300))
        whole = indexed(events) + rest
        assert [e.data["index"] for e in whole] == list(range(len(whole)))  # no gap, no repeat
        assert whole[-1].event == "done" and whole[-1].data["usage"]["completion_tokens"] == NUM_TOKENS
        other = indexed(read_sse(subs[1]["stream_url"], timeout=300))
        assert other[-1].event == "done" and other[-1].data["usage"]["completion_tokens"] == NUM_TOKENS
        idle_s = stop_with_ctrl_c(second_run)
    finally:
        second_run.close()
    print(f"make run: an idle Ctrl-C stopped everything in {idle_s:.1f} s")
    assert idle_s <= 10


@pytest.fixture
def listener() -> Iterator[tuple[int, socket.socket]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1], sock
    sock.close()


def refused(env: dict[str, str]) -> tuple[int, str, float]:
    """Run `make run` expecting it to refuse: its status, its output and how long it took."""
    began = time.monotonic()
    done = subprocess.run(
        ["make", "run"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - began


def test_a_port_in_use_ends_make_run_naming_the_port_and_its_holder(
    server_env: dict[str, str], cache_dir: Path, tmp_path: Path, listener: tuple[int, socket.socket]
) -> None:
    port, _ = listener
    env = {**run_env(server_env, tmp_path / "cache", cache_dir), "FLOWER_PORT": str(port)}
    code, output, took_s = refused(env)
    assert code != 0 and took_s < 10
    assert f"port {port} (FLOWER_PORT) on 127.0.0.1 is in use by pid {os.getpid()}" in output, output
    assert not (tmp_path / "cache" / "run" / "logs").exists()  # nothing was started


def test_a_public_host_without_credentials_ends_make_run_naming_the_variables(
    server_env: dict[str, str], cache_dir: Path, tmp_path: Path
) -> None:
    env = run_env(server_env, tmp_path / "cache", cache_dir)
    env = {k: v for k, v in env.items() if k not in ("ADMIN_API_KEY", "FLOWER_BASIC_AUTH")}
    env.update(HOST="0.0.0.0", METRICS_TOKEN="t")
    code, output, took_s = refused(env)
    assert code != 0 and took_s < 10
    assert "set ADMIN_API_KEY and FLOWER_BASIC_AUTH, or bind HOST=127.0.0.1" in output, output
