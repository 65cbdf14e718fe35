"""`make run` (scripts/serve.py) supervises: SIGKILL one of two workers mid-stream and the stack stays up,
the worker is back, and every stream completes with no gap; SIGTERM then stops everything."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import requests

from devtools.clients import indexed, read_sse, submit
from devtools.embedded_redis import free_port
from devtools.servers import Process, wait_for
from shared.settings import PROJECT_ROOT
from tests.e2e.test_streams import read_first


def workers(url: str) -> dict[int, str]:
    return {w["pid"]: w["state"] for w in requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]}


def test_make_run_restarts_a_killed_worker_and_loses_no_stream(
    server_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in server_env.items() if k != "REDIS_URL"}  # serve.py starts its own Redis
    env.update(
        CACHE_DIR=str(tmp_path / "cache"), PORT=str(port), FLOWER_PORT=str(free_port()),
        METRICS_PORT=str(free_port()), WORKERS="2", DRAIN_TIMEOUT="5",
    )  # fmt: skip
    serve = Process("make-run", [sys.executable, str(PROJECT_ROOT / "scripts" / "serve.py")], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    try:
        wait_for(lambda: list(workers(url).values()) == ["ready", "ready"], 180, "two ready workers", serve)
        subs = [submit(url, prompt=f"supervised {i}", max_new_tokens=1200, temperature=0, ignore_eos=True)
                for i in range(4)]  # fmt: skip
        head, _ = read_first(subs[0]["stream_url"], 5)
        status = requests.get(f"{url}/v1/requests/{subs[0]['id']}", timeout=5).json()
        victim = int(status["worker_id"].rsplit("-", 1)[1])
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        def replaced() -> bool:
            now = workers(url)
            return len(now) == 2 and victim not in now and "loading" not in now.values()

        wait_for(replaced, 60, "the killed worker replaced", serve)
        back_s = time.monotonic() - killed
        print(f"make run: the killed worker was back, ready, {back_s:.1f} s after SIGKILL")
        assert back_s < 10
        pids = set(workers(url))
        streams = [head + indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=120))]
        streams += [indexed(read_sse(s["stream_url"], timeout=120)) for s in subs[1:]]
        for events in streams:
            assert [e.data["index"] for e in events] == list(range(len(events)))
            assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 1200
    finally:
        serve.popen.send_signal(signal.SIGTERM)
        serve.popen.wait(timeout=90)
        serve.stop()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert alive == []  # SIGTERM stopped every process it started
