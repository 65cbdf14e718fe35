"""`make run` (scripts/serve.py) supervises: SIGKILL one of two workers mid-stream and the stack stays up,
the worker is back, and every stream completes with no gap. SIGKILL of `make` and of serve.py under it
then leaves no process behind: supervisord (told by the kernel that its parent died) stops everything."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from devtools.clients import indexed, read_sse, submit
from devtools.embedded_redis import free_port
from devtools.servers import wait_for
from devtools.terminal import Terminal, session_pids
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
    serve = Terminal(["make", "run"], env, PROJECT_ROOT, log_dir / "make-run.log")
    url = f"http://127.0.0.1:{port}"
    try:
        serve.wait_for_output("TorchWeave is up", 240)
        wait_for(lambda: list(workers(url).values()) == ["ready", "ready"], 180, "two ready workers")
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

        wait_for(replaced, 60, "the killed worker replaced")
        back_s = time.monotonic() - killed
        print(f"make run: the killed worker was back, ready, {back_s:.1f} s after SIGKILL")
        assert back_s < 10
        streams = [head + indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=120))]
        streams += [indexed(read_sse(s["stream_url"], timeout=120)) for s in subs[1:]]
        for events in streams:
            assert [e.data["index"] for e in events] == list(range(len(events)))
            assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 1200

        serve_py = [pid for pid in session_pids(serve.session) if is_serve_py(pid)]
        for pid in [serve.popen.pid, *serve_py]:  # make, then serve.py: nothing is left to stop the rest
            os.kill(pid, signal.SIGKILL)
        # Every process make run started is in the terminal's session, whatever its process group.
        wait_for(lambda: session_pids(serve.session) == [], 60, "no process of make run left")
    finally:
        serve.close()


def is_serve_py(pid: int) -> bool:
    return b"scripts/serve.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
