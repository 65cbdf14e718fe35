"""Nothing lost: a worker killed mid-generation, a worker stopped with SIGTERM.

These tests run their own two workers and API on a Redis database of their own, so killing
a worker disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.clients import indexed, read_sse, stream_text, submit
from devtools.servers import Process, start_api, start_worker, wait_for
from tests.e2e.conftest import greedy_text
from tests.e2e.test_streams import read_first

PROMPTS = ["Crash one", "Crash two, a little longer", "Three", "Four: the last of them"]
MAX_NEW = 500


@pytest.fixture(scope="module")
def cluster(server_env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, dict[str, Process]]]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/2",
        "DRAIN_TIMEOUT": "1",
        "MAX_BATCH": "4",
    }
    workers = {p.name: p for p in (start_worker(env, log_dir, "w1"), start_worker(env, log_dir, "w2"))}
    api, url = start_api(env, log_dir)
    yield url, workers
    for proc in [*workers.values(), api]:
        proc.stop()


def worker_of(url: str, request_id: str) -> str:
    """The id (host-pid) of the worker running a request, once one claimed it."""
    wait_for(
        lambda: requests.get(f"{url}/v1/requests/{request_id}", timeout=5).json()["worker_id"], 30, "a worker"
    )
    worker_id: str = requests.get(f"{url}/v1/requests/{request_id}", timeout=5).json()["worker_id"]
    return worker_id


def pid_of(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 1)[1])


def test_sigkill_mid_generation_continues_on_the_other_worker(
    cluster: tuple[str, dict[str, Process]], reference: Any, server_env: dict[str, str], log_dir: Path
) -> None:
    url, workers = cluster
    subs = [submit(url, prompt=p, max_new_tokens=MAX_NEW, temperature=0, ignore_eos=True) for p in PROMPTS]
    head, _ = read_first(subs[0]["stream_url"], 5)
    victim_id = worker_of(url, subs[0]["id"])
    victim = next(p for p in workers.values() if p.pid == pid_of(victim_id))
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The first stream is followed from where the client was; the others from the start.
    rest = indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=60))
    print(f"the first stream finished {time.monotonic() - killed_at:.1f} s after the kill")
    streams = [head + rest] + [indexed(read_sse(s["stream_url"], timeout=60)) for s in subs[1:]]
    for prompt, sub, events in zip(PROMPTS, subs, streams, strict=True):
        assert [e.data["index"] for e in events] == list(range(len(events))), (
            "an index repeated or went missing"
        )
        assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == MAX_NEW
        assert stream_text(events) == greedy_text(reference, prompt, MAX_NEW, ignore_eos=True), (
            f"{prompt!r} differs"
        )
        status = requests.get(f"{url}/v1/requests/{sub['id']}", timeout=5).json()
        assert status["status"] == "finished" and status["worker_id"] != victim_id
    victim.stop()
    workers[victim.name] = start_worker(
        {
            **server_env,
            "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/2",
            "DRAIN_TIMEOUT": "1",
            "MAX_BATCH": "4",
        },
        log_dir,
        victim.name,
    )


def test_sigterm_hands_unfinished_requests_back(
    cluster: tuple[str, dict[str, Process]], reference: Any
) -> None:
    url, workers = cluster
    subs = [
        submit(url, prompt=p, max_new_tokens=MAX_NEW * 2, temperature=0, ignore_eos=True) for p in PROMPTS
    ]
    head, _ = read_first(subs[0]["stream_url"], 3)
    pid = pid_of(worker_of(url, subs[0]["id"]))
    os.kill(pid, signal.SIGTERM)  # drain timeout is 1 s here: the rest is handed back
    events = head + indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=90))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert stream_text(events) == greedy_text(reference, PROMPTS[0], MAX_NEW * 2, ignore_eos=True)
    proc = next(p for p in workers.values() if p.pid == pid)
    wait_for(lambda: not proc.is_alive(), 30, "the worker to exit")
    assert proc.popen.returncode == 0  # a clean exit
